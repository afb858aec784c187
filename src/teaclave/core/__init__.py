"""Pure core: domain types, the task state machine and the access rules (no I/O)."""
