"""Benchmarks: each prints its figures and ratios against a baseline measured in the same run.

Run one as ``python bench/NAME.py`` or ``python -m bench.NAME`` from the repository root; ``make
bench`` runs them all with ``--quick`` settings, ``make bench-full`` with their full settings.
"""
