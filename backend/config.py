"""Settings, read from the environment (12-factor); nothing secret has a default in production."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "postgresql://gridpatrol:gridpatrol@127.0.0.1:5432/gridpatrol"
DEFAULT_BUSINESS_TZ = "Asia/Shanghai"


def business_tz_from_env() -> str:
    """The business time zone's name (docs/dates.md): deadlines, overdue and every business
    date are counted there, whatever the server's or the database session's zone."""
    return os.environ.get("GRIDPATROL_BUSINESS_TZ", "").strip() or DEFAULT_BUSINESS_TZ


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    migration_url: str = ""  # the schema owner's URL; empty: same as database_url
    secret_key: str = ""
    access_token_minutes: int = 15
    max_upload_mb: int = 64
    environment: str = "development"
    proxy_hops: int = 0  # trusted reverse proxies in front (X-Forwarded-For)
    geofence_m: float = 150.0  # check-in radius around the place, plus the phone's accuracy
    # server-side prepared statements on the hot write path (off behind a PgBouncer in
    # transaction mode, which cannot keep a session's PREPAREd statements)
    prepared_statements: bool = True
    business_tz: str = DEFAULT_BUSINESS_TZ  # IANA zone of business dates (docs/dates.md)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def owner_url(self) -> str:
        return self.migration_url or self.database_url

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            "migration_url": os.environ.get("GRIDPATROL_MIGRATION_URL", ""),
            "secret_key": os.environ.get("GRIDPATROL_SECRET_KEY", ""),
            "access_token_minutes": int(os.environ.get("GRIDPATROL_ACCESS_TOKEN_MINUTES", "15")),
            "max_upload_mb": int(os.environ.get("GRIDPATROL_MAX_UPLOAD_MB", "64")),
            "environment": os.environ.get("GRIDPATROL_ENV", "development"),
            "proxy_hops": int(os.environ.get("GRIDPATROL_PROXY_HOPS", "0")),
            "geofence_m": float(os.environ.get("GRIDPATROL_GEOFENCE_M", "150")),
            "prepared_statements": os.environ.get("GRIDPATROL_PREPARED_STATEMENTS", "on").lower()
            not in ("off", "0", "false", "no"),
            "business_tz": business_tz_from_env(),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def webhook_allow_from_env() -> str:
    """GRIDPATROL_WEBHOOK_ALLOW: comma-separated CIDRs and host names that department webhooks
    may reach over http and at private addresses (docs/webhooks.md); empty: public https only.
    Read when asked (backend/services/webhook_policy.py), by the API and the outbox runner."""
    return os.environ.get("GRIDPATROL_WEBHOOK_ALLOW", "")
