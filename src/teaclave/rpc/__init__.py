"""Attested gRPC channels (RA-TLS): certificates, servers and client channels."""
