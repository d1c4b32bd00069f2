"""Serving the champion: signature-driven input validation, hot reload, prediction log.

Nothing here imports FastAPI or Prefect; ``api/`` wires these pieces into HTTP.
"""
