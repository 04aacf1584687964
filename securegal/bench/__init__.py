"""Benchmarks runnable from the command line (``securegal bench ...``)."""
