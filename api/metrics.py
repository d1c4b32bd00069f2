"""Prometheus metrics of the API (prometheus-client).

With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
before start: every process then writes its samples there and ``/metrics`` aggregates
them (prometheus-client multiprocess mode); gauges use the ``mostrecent``/``liveall``
modes that mode supports.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("iac_api_requests", "HTTP requests handled.", ["method", "route", "status"])
LATENCY = Histogram(
    "iac_api_request_duration_seconds",
    "Time from request start to response end.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter(
    "iac_api_predictions",
    "Rows predicted, by predicted class and model version.",
    ["predicted_class", "model_version"],
)
MODEL_VERSION = Gauge(
    "iac_api_model_version",
    "Registered model version being served (0: none yet).",
    ["model_name"],
    multiprocess_mode="mostrecent",
)
MODEL_LOADED_AT = Gauge(
    "iac_api_model_loaded_timestamp_seconds",
    "Unix time the served version was loaded.",
    ["model_name"],
    multiprocess_mode="mostrecent",
)
RELOADS = Counter("iac_api_model_reloads", "Successful hot reloads (new version swapped in).")
RELOAD_FAILURES = Counter(
    "iac_api_model_reload_failures",
    "Polls that failed: registry unreachable or new version not loadable.",
    ["reason"],
)
MODEL_FALLBACK = Gauge(
    "iac_api_model_fallback",
    "1 while the served version is not the alias's version because that one cannot be "
    "loaded (the previous model, or the last good one, serves instead).",
    ["model_name"],
    multiprocess_mode="mostrecent",
)
REGISTRY_UP = Gauge(
    "iac_api_registry_up",
    "1 if the last poll reached the model registry.",
    multiprocess_mode="mostrecent",
)
PREDICTION_LOG_WRITTEN = Counter("iac_api_prediction_log_written", "Prediction rows written.")
PREDICTION_LOG_DROPPED = Counter(
    "iac_api_prediction_log_dropped", "Prediction rows dropped because the log queue was full."
)
PREDICTION_LOG_FAILED = Counter(
    "iac_api_prediction_log_failed", "Prediction rows lost to a database error."
)
PREDICTION_LOG_PRUNED = Counter(
    "iac_api_prediction_log_pruned",
    "Logged predictions deleted by the retention (age and row limits).",
)
AUTH_FAILURES = Counter("iac_api_auth_failures", "Requests refused for a bad or missing token.")


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type (aggregated across processes if configured)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST
