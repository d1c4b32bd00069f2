"""``python -m api``: serve the API with uvicorn on IAC_API_HOST:IAC_API_PORT."""

from __future__ import annotations

import uvicorn

from api.settings import get_api_settings
from ia_continu.cli import settings_or_exit, validated_or_exit


def main() -> None:
    """Validate settings (exit 2 naming the variable on error), then run uvicorn."""
    settings_or_exit()
    api_settings = validated_or_exit(get_api_settings, "IAC_API_")
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=api_settings.host,
        port=api_settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
