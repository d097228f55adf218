"""Benchmarks (``python bench/<name>.py``): each prints a table of its figures, or one JSON object with
``--json``. A package only so that child processes can import helpers as ``bench.<module>``."""
