"""IA Continu's domain logic, one subpackage per stage of the continuous-training loop.

The tree reads as the pipeline::

    data/        sources (replay, synthetic, served traffic), validation, labels, storage
    monitoring/  data drift, concept drift, serving drift and estimated accuracy (CBPE)
    loop/        one cycle: ingest -> detect -> decide -> retrain; its typed results,
                 retrain policy, metrics and history
    training/    training window, challenger training, promotion gate, MLflow registry
    serving/     the champion behind the API: signature, hot reload, prediction log
    notify/      Discord embeds, sender and outbox
    auth/        API tokens and console passwords

``settings`` (``IAC_*``), ``logs`` (loguru) and ``cli`` (``ia-continu``) are shared by all.
Plain typed functions, unit-tested directly; ``flows/`` wraps them in Prefect tasks and
flows, and the apps (``api/``, ``ui/``, ``deployments/``) build on them.
"""
