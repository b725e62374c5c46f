"""Benchmarks: real-time and quality figures, each run from the repository root as ``python -m benchmarks.NAME``.

Figures, machines and dates: ``benchmarks/README.md``; raw results: ``benchmarks/results/``.
"""
