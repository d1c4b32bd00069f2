"""Prefect 2 flows: thin wiring around ia_continu's functions.

In a flow-run process (a worker sets ``PREFECT__FLOW_RUN_ID``), the project's loguru
configuration takes over the console, Prefect's own lines included
(:mod:`flows.logging_setup`); imported anywhere else (tests, tools) it changes nothing.
"""

import os

if os.environ.get("PREFECT__FLOW_RUN_ID"):
    from flows.logging_setup import setup_flow_logging

    setup_flow_logging()
