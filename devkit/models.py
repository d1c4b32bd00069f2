"""Factories shared by the tests and the benchmarks: a classifier trained on Elec2 batches
and registered in an MLflow registry, and Elec2 feature rows for prediction requests."""

from __future__ import annotations

import pandas as pd

from ia_continu.data.sources import build_source
from ia_continu.settings import Settings
from ia_continu.training import registry
from ia_continu.training import trainer as training


def register_version(
    tracking_uri: str,
    name: str,
    *,
    positions: tuple[int, ...] = (0, 1),
    promote: bool = True,
    estimator: str = "logistic_regression",
) -> int:
    """Train on Elec2 batches ``positions``, log, register and (by default) promote.

    Returns:
        The new registered version number.
    """
    settings = Settings(mlflow_tracking_uri=tracking_uri, registered_model_name=name)
    source = build_source(settings)
    frame = pd.concat([source.batch(p) for p in positions], ignore_index=True)
    model = training.train(frame, source.schema, estimator)  # type: ignore[arg-type]
    features = list(source.schema.features)
    client = registry.client(tracking_uri)
    _, model_uri = registry.log_challenger(
        client,
        experiment="api-tests",
        model=model,
        input_example=frame[features].head(5),
        params={"estimator": estimator, "positions": positions},
        metrics={"validation_accuracy": training.accuracy(model, frame, source.schema)},
        tags={"trigger": "test"},
        lineage={"positions": list(positions)},
    )
    version = registry.register(client, name=name, model_uri=model_uri, tags={})
    if promote:
        registry.promote(client, name, version)
    return version


def elec2_rows(n: int, position: int = 5) -> list[dict[str, object]]:
    """``n`` feature rows of Elec2 (JSON-ready), from batch ``position`` onwards."""
    settings = Settings()
    source = build_source(settings)
    frames: list[pd.DataFrame] = []
    while sum(len(f) for f in frames) < n:
        frames.append(source.batch(position + len(frames)))
    frame = pd.concat(frames, ignore_index=True).head(n)
    return frame[list(source.schema.features)].to_dict(orient="records")  # type: ignore[return-value]
