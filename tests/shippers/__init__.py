"""Real and documented shipper records for the listener and central-mode tests."""
