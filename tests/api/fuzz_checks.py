"""Checks of our own for the schemathesis run of fuzz_api.py."""
