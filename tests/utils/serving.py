"""Factory: served predictions of the champion, as the prediction-log index writes them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ia_continu import registry, serving_source
from ia_continu.settings import Settings
from ia_continu.storage.schema import get_engine
from ia_continu.storage.tables import ServedPredictionRow


def serve_champion(
    settings: Settings,
    n: int,
    at: datetime,
    *,
    position: int = 3,
    labelled: bool = True,
    shift: dict[str, float] | None = None,
) -> None:
    """Insert ``n`` predictions of the champion on the seed source's batch ``position``
    (served from ``at`` on, 1 ms apart), labelled with the batch's targets or not;
    ``shift`` adds a constant to numeric features (a covariate shift)."""
    client = registry.client(settings.mlflow_tracking_uri)
    champion = registry.get_alias(client, settings.registered_model_name)
    assert champion is not None, "no champion to serve"
    model = registry.load_model(champion.uri, settings.mlflow_tracking_uri)
    seed = serving_source.seed_source(settings)
    rows = seed.batch(position).head(n)
    features = rows[list(seed.schema.features)].copy()
    for column, delta in (shift or {}).items():
        features[column] = features[column] + delta
    proba = model.predict_proba(features)
    best = proba.argmax(axis=1)
    with Session(get_engine(settings.resolved_database_url)) as session:
        for i, record in enumerate(features.to_dict(orient="records")):
            label = str(rows[seed.schema.target].iloc[i]) if labelled else None
            session.add(
                ServedPredictionRow(
                    prediction_id=f"p{position}-{i}",
                    write_id=1,
                    served_at=at + timedelta(milliseconds=i),
                    request_id=f"r{position}-{i}",
                    model_name=settings.registered_model_name,
                    model_version=champion.version,
                    features=record,
                    prediction=str(model.classes_[best[i]]),
                    probability=float(proba[i, best[i]]),
                    label=label,
                    labelled_at=at if labelled else None,
                    label_origin="test" if labelled else None,
                )
            )
        session.commit()
