"""Pure parsers: kernel log framing, OOM report assembly, cgroup identity. No I/O."""
