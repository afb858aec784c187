"""File crypto formats (reference §5), over streams and bytes handed in; no I/O."""
