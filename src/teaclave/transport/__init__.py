"""Moving files between user URLs and the executor."""
