"""Benchmarks of IA Continu: prequential accuracy, cycle wall time, drift-test speed.

Run from the repository root, for example ``.venv/bin/python -m bench.prequential``;
see ``bench/README.md``.
"""
