"""The Python executor: user payloads run in an OS sandbox, files over one channel."""
