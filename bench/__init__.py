"""Benchmarks of IA Continu: the drift policy on a stream suite, cycle wall time, drift-test
speed, API throughput.

Run from the repository root, for example ``.venv/bin/python -m bench.streams``; see
``bench/README.md``.
"""
