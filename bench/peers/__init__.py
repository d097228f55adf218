"""Peers of ``dorgu operator`` for side-by-side benchmarks: the same observable work, other runtimes."""
