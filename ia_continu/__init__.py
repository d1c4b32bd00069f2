"""IA Continu's domain logic: ingestion, validation, drift, training, promotion, serving.

Plain typed functions, unit-tested directly; ``flows/`` wraps them in Prefect tasks and
flows, and the apps (``api/``, ``ui/``, ``deployments/``) build on them.
"""
