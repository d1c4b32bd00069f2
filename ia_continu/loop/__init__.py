"""The loop: one continuous-training cycle and what it reports.

``cycle`` runs ingest, drift detection and retraining as plain functions that the flows
wrap in Prefect tasks; ``policy`` decides whether a cycle retrains and with which trigger;
``results`` are the typed results that cross from the cycle to the flows, the
notifications and the metrics; ``flow_metrics`` pushes them to Prometheus; ``history``
reads the loop's past for the operator console.
"""
