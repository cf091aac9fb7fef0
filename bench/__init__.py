"""Benchmarks (`make bench`): figures to watch, never pass/fail tests."""
