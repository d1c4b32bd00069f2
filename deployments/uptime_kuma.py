"""Provision Uptime Kuma: the IA Continu monitors and a Discord notification, idempotently.

    python -m deployments.uptime_kuma

Uses the maintained client ``uptime-kuma-api`` (https://uptime-kuma-api.readthedocs.io,
Socket.IO, the same calls as Uptime Kuma's own web UI). On a fresh Uptime Kuma it creates
the admin account; then it creates or updates, by name:

- monitors ``IA Continu API`` (``/health`` every 30 s), ``IA Continu Prefect``,
  ``IA Continu MLflow`` and ``IA Continu console`` (every 60 s);
- the notification ``IA Continu Discord`` when ``IAC_DISCORD_WEBHOOK_URL`` is set,
  attached to those monitors.

Running it again changes nothing that already matches. Settings come from
``IAC_UPTIME_KUMA_*`` variables (:class:`KumaSettings`); the password and the webhook are
secrets and are never printed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

NOTIFICATION = "IA Continu Discord"


class KumaSettings(BaseSettings):
    """Where Uptime Kuma is, its admin account, and the URLs to monitor.

    Environment variable = ``IAC_UPTIME_KUMA_`` + field name, upper case; the webhook is
    ``IAC_DISCORD_WEBHOOK_URL`` like everywhere else.

    Raises:
        pydantic.ValidationError: a missing password or a malformed value (the message
            names the field).
    """

    model_config = SettingsConfigDict(env_prefix="IAC_UPTIME_KUMA_", extra="ignore")

    url: str = "http://127.0.0.1:3001"
    username: str = "admin"
    password: SecretStr = Field(..., min_length=8, description="Admin password (secret).")
    timeout_seconds: float = Field(10.0, gt=0)
    api_url: str = "http://127.0.0.1:8000"
    prefect_api_url: str = "http://127.0.0.1:4200/api"
    mlflow_url: str = "http://127.0.0.1:5000"
    ui_url: str = "http://127.0.0.1:8501"
    api_interval_seconds: int = Field(30, ge=20)
    interval_seconds: int = Field(60, ge=20)
    discord_webhook_url: SecretStr | None = Field(None, validation_alias="IAC_DISCORD_WEBHOOK_URL")


@dataclass(frozen=True)
class Monitor:
    """One HTTP monitor: a name, the URL that must answer 2xx, the interval in seconds."""

    name: str
    url: str
    interval: int


def monitors(settings: KumaSettings) -> list[Monitor]:
    """The monitors IA Continu needs, from the configured URLs."""
    return [
        Monitor(
            "IA Continu API",
            f"{settings.api_url.rstrip('/')}/health",
            settings.api_interval_seconds,
        ),
        Monitor(
            "IA Continu Prefect",
            f"{settings.prefect_api_url.rstrip('/')}/health",
            settings.interval_seconds,
        ),
        Monitor(
            "IA Continu MLflow",
            f"{settings.mlflow_url.rstrip('/')}/health",
            settings.interval_seconds,
        ),
        Monitor(
            "IA Continu console",
            f"{settings.ui_url.rstrip('/')}/_stcore/health",
            settings.interval_seconds,
        ),
    ]


@dataclass
class Report:
    """What a provisioning run did, by name."""

    created: list[str]
    updated: list[str]
    unchanged: list[str]


def provision(settings: KumaSettings) -> Report:
    """Make Uptime Kuma match :func:`monitors` (and the Discord notification).

    Raises:
        uptime_kuma_api.UptimeKumaException: Uptime Kuma refused a call (bad login...).
        socketio.exceptions.ConnectionError: Uptime Kuma cannot be reached.
    """
    from uptime_kuma_api import MonitorType, NotificationType, UptimeKumaApi

    report = Report([], [], [])
    password = settings.password.get_secret_value()
    with UptimeKumaApi(settings.url, timeout=settings.timeout_seconds) as api:
        if api.need_setup():
            api.setup(settings.username, password)
            logger.info("Uptime Kuma: admin account {!r} created", settings.username)
        api.login(settings.username, password)

        notification_ids: list[int] = []
        if settings.discord_webhook_url is not None:
            wanted = {
                "name": NOTIFICATION,
                "type": NotificationType.DISCORD,
                "isDefault": True,
                "discordWebhookUrl": settings.discord_webhook_url.get_secret_value(),
                "discordUsername": "Uptime Kuma (IA Continu)",
            }
            existing = {n["name"]: n for n in api.get_notifications()}
            if NOTIFICATION not in existing:
                notification_id = int(api.add_notification(**wanted)["id"])
                report.created.append(NOTIFICATION)
            else:
                notification_id = int(existing[NOTIFICATION]["id"])
                if _differs(existing[NOTIFICATION], wanted):
                    api.edit_notification(notification_id, **wanted)
                    report.updated.append(NOTIFICATION)
                else:
                    report.unchanged.append(NOTIFICATION)
            notification_ids.append(notification_id)

        current = {m["name"]: m for m in api.get_monitors()}
        for monitor in monitors(settings):
            wanted_monitor: dict[str, Any] = {
                "type": MonitorType.HTTP,
                "name": monitor.name,
                "url": monitor.url,
                "interval": monitor.interval,
                "retryInterval": monitor.interval,
                "maxretries": 1,
            }
            found = current.get(monitor.name)
            if found is None:
                api.add_monitor(**wanted_monitor, notificationIDList=notification_ids)
                report.created.append(monitor.name)
                continue
            attached = {int(i) for i in _notification_ids(found)}
            if _differs(found, wanted_monitor) or not set(notification_ids) <= attached:
                api.edit_monitor(
                    int(found["id"]),
                    **wanted_monitor,
                    notificationIDList=sorted(attached | set(notification_ids)),
                )
                report.updated.append(monitor.name)
            else:
                report.unchanged.append(monitor.name)
    return report


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    def norm(value: Any) -> Any:
        return getattr(value, "value", value)

    return any(norm(current.get(key)) != norm(value) for key, value in wanted.items())


def _notification_ids(monitor: dict[str, Any]) -> list[int]:
    ids = monitor.get("notificationIDList") or []
    if isinstance(ids, dict):  # older servers send {"id": true}
        return [int(k) for k, on in ids.items() if on]
    return [int(i) for i in ids]


def main() -> int:
    """Entry point: a clear message naming the setting on bad configuration, exit 2."""
    try:
        settings = KumaSettings()
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = (
                "IAC_DISCORD_WEBHOOK_URL"
                if field == "IAC_DISCORD_WEBHOOK_URL"
                else (f"IAC_UPTIME_KUMA_{field.upper()}")
            )
            print(f"{name}: {error['msg']}", file=sys.stderr)
        return 2
    try:
        report = provision(settings)
    except Exception as exc:  # socket.io / Kuma errors: a message, not a stack trace
        print(f"Uptime Kuma at {settings.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"Uptime Kuma at {settings.url}: created {report.created or 'nothing'},"
        f" updated {report.updated or 'nothing'}, unchanged {report.unchanged or 'nothing'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
