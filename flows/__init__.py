"""Prefect 2 flows: thin wiring around ia_continu's functions."""
