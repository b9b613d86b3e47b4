"""Benchmarks and Monte Carlo studies: ``python -m benchmarks.NAME``; results in ``benchmarks/results/``."""
