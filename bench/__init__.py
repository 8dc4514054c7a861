"""Backprop's benchmarks: ``python -m bench`` measures Backprop against the tools users would
pick instead and writes ``BENCHMARKS.md``; the ``bench_*.py`` scripts measure single parts.
"""
