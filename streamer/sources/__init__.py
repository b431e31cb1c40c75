"""Sources: kmsg, journald, files/stdin. One module each."""
