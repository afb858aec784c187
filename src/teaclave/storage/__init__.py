"""Persistence: the versioned key/value store interface and its backends."""
