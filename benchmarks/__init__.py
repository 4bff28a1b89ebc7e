"""Benchmarks: commands that print figures and write JSON (targets live here, not in unit tests)."""
