"""The ``teaclave`` command: run the platform, use it, encrypt files, check attestation."""
