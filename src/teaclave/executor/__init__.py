"""Runs one staged task: fetch, verify and decrypt inputs, run, encrypt and upload outputs."""
