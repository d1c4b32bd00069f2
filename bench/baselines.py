"""Reference policies of the stream benchmark, under the project's prequential protocol.

Batch 0 only trains. For each batch ``t >= 1`` the model in place predicts the *whole*
batch ``t`` first, then may learn from it (Gama, Sebastião & Rodrigues 2013, "On
evaluating stream learning algorithms"). The project's own policies (never, every
batch, ours) run the real cycle code in ``bench/streams.py``; these are the yardsticks:

* :func:`majority_previous`: the no-information baseline, the majority class of batch
  ``t - 1``;
* :func:`last_batch`: the project's estimator trained on batch ``t - 1`` alone (the
  previous batch's model), the simplest "always retrain";
* :func:`arf`: river's Adaptive Random Forest (Gomes et al. 2017, "Adaptive random
  forests for evolving data stream classification", Machine Learning 106), the
  strongest online peer, given the same batches: it predicts all of batch ``t`` before
  learning any row of it.

Each returns a :class:`~bench.stream_report.PolicyTrace` with its wall time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from bench.stream_report import PolicyTrace
from bench.stream_suite import Stream, river_version
from ia_continu.data.sources import Schema
from ia_continu.settings import Settings
from ia_continu.training.trainer import train


def _labelled(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Rows with a label: an unlabelled row can be neither tested nor learnt."""
    return frame[frame[schema.target].notna()]


def _majority(frame: pd.DataFrame, schema: Schema) -> str | None:
    """Most frequent label of ``frame`` (ties: the smallest as ``str``), None if no label."""
    labels = frame[schema.target].dropna().astype(str)
    if labels.empty:
        return None
    counts = labels.value_counts()
    return str(min(counts.index[counts == counts.iloc[0]]))


def majority_previous(stream: Stream) -> PolicyTrace:
    """Predict the majority class of batch ``t - 1`` for every row of batch ``t``.

    A batch with no label keeps the previous answer. No model, so no retrain,
    promotion or drift flag (flags are None).
    """
    started = time.perf_counter()
    schema = stream.schema
    trace = PolicyTrace(
        "majority_previous", notes="majority class of the previous batch (no-information)"
    )
    answer = _majority(stream.batches[0], schema)
    for t in range(1, len(stream.batches)):
        batch = _labelled(stream.batches[t], schema)
        trace.add(t, batch[schema.target], np.full(len(batch), str(answer)))
        answer = _majority(batch, schema) or answer
    trace.seconds = time.perf_counter() - started
    return trace


def last_batch(stream: Stream, settings: Settings) -> PolicyTrace:
    """The project's estimator trained on batch ``t - 1`` alone predicts batch ``t``.

    ``ia_continu.training.trainer.train(batch, schema, settings.estimator,
    settings.estimator_params)`` after every batch; a batch it cannot train on (single
    class, no label) keeps the previous model (``retrain`` and ``promoted`` False
    there). Before any model exists the majority class of the last batch answers.
    """
    started = time.perf_counter()
    schema = stream.schema
    trace = PolicyTrace(
        "last_batch",
        notes=f"{settings.estimator} trained on the previous batch alone, no gate",
    )
    model = _try_train(stream.batches[0], schema, settings)
    fallback = _majority(stream.batches[0], schema)
    for t in range(1, len(stream.batches)):
        batch = _labelled(stream.batches[t], schema)
        if model is not None:
            predicted = np.asarray(model.predict(batch[list(schema.features)]))
        else:
            predicted = np.full(len(batch), str(fallback))
        new = _try_train(batch, schema, settings)  # after the prediction: test, then train
        trace.add(
            t, batch[schema.target], predicted, retrain=new is not None, promoted=new is not None
        )
        model = new if new is not None else model
        fallback = _majority(batch, schema) or fallback
    trace.seconds = time.perf_counter() - started
    return trace


def _try_train(frame: pd.DataFrame, schema: Schema, settings: Settings) -> Any | None:
    try:
        return train(frame, schema, settings.estimator, settings.estimator_params)
    except ValueError:  # empty or single-class batch: nothing to learn a classifier from
        return None


def river_rows(frame: pd.DataFrame, schema: Schema) -> Iterator[tuple[dict[Hashable, Any], str]]:
    """``(x, y)`` per labelled row for river: features as a dict without missing values,
    categorical values as ``str`` (river treats non-numbers as nominal), label as ``str``."""
    categorical = set(schema.categorical)
    features = list(schema.features)
    for values, label in zip(
        frame[features].itertuples(index=False, name=None), frame[schema.target], strict=True
    ):
        if label is None or (isinstance(label, float) and math.isnan(label)):
            continue
        x: dict[Hashable, Any] = {}
        for name, value in zip(features, values, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            x[name] = str(value) if name in categorical else float(value)
        yield x, str(label)


def arf(stream: Stream, seed: int = 0) -> PolicyTrace:
    """river's ``forest.ARFClassifier(seed=seed)`` (river defaults), batch-prequential.

    Learns batch 0 row by row; then for each batch ``t``: ``predict_one`` on every row
    of ``t`` (no label seen), then ``learn_one`` on every row of ``t``. A row it cannot
    answer yet (``None``) counts as wrong. ARF replaces trees on its own (ADWIN warning
    and drift detectors per tree), which the trace cannot see: retrain, promoted and
    flags are False / None.
    """
    from river import forest

    started = time.perf_counter()
    schema = stream.schema
    model = forest.ARFClassifier(seed=seed)
    trace = PolicyTrace(
        "arf",
        notes=f"river {river_version()} forest.ARFClassifier(seed={seed}), learns every "
        "row after its batch is predicted",
    )
    for x, y in river_rows(stream.batches[0], schema):
        model.learn_one(x, y)
    for t in range(1, len(stream.batches)):
        rows = list(river_rows(stream.batches[t], schema))
        predicted = [model.predict_one(x) for x, _ in rows]
        trace.add(t, [y for _, y in rows], ["" if p is None else str(p) for p in predicted])
        for x, y in rows:
            model.learn_one(x, y)
    trace.seconds = time.perf_counter() - started
    return trace
