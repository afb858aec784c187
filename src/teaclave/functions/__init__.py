"""Built-in functions (reference §7): pure code whose only I/O is the runtime file API."""
