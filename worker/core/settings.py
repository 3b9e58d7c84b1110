"""Configuration from the environment, validated once at start-up.

Every process (web, worker, release, CLI) reads the same variables, so a
misconfiguration fails loudly at boot with the variable's name instead of
surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
from pathlib import Path
from typing import Literal

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_KEY_BYTES = 32


class ConfigError(Exception):
    """A configuration problem a user must fix; the message names what and where."""


class Settings(BaseSettings):
    """Environment variables understood by callhook (see README, "Configuration")."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite file")
    redis_url: str = Field(default="", description="Redis URL; empty = embedded redis-server")
    # For a `rediss://` URL that does not say: how its certificate is checked. Heroku's
    # Key-Value Store presents a self-signed one, so its app.json sets `none`.
    redis_ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    hubspot_access_token: SecretStr | None = None
    hubspot_base_url: str = "https://api.hubapi.com"
    default_region: str = "US"
    mappings_dir: Path = Path("mappings")
    instance_dir: Path = Path("instance")
    public_base_url: str = ""
    port: int = 5000
    max_body_bytes: int = 1_000_000
    # How long a webhook may wait for the broker before it is left to the outbox sweep.
    broker_publish_timeout_s: float = 2.0
    # A task a worker took but never acknowledged (it died outright: SIGKILL, a lost
    # machine) goes to another worker after this long; retry countdowns stay under it.
    broker_visibility_timeout_s: float = Field(default=300.0, ge=5.0)
    # Events stored this long ago and never enqueued are re-enqueued by the sweep.
    outbox_grace_s: float = 10.0
    outbox_sweep_interval_s: float = 15.0
    # An ended call still unsynced this long after its last change gets a new sync task
    # (its task was lost with a killed worker).
    crm_resync_after_s: float = 300.0
    # Under load (another call came due within the last second), a call is logged once it
    # has been unchanged this long, with every call due in the same window: a CDR right
    # after the live end goes into the create, and calls share batch requests. At a
    # trickle nothing waits. 0: never hold.
    crm_batch_hold_s: float = 2.0
    hubspot_timeout_s: float = 15.0
    # HubSpot's limits for a private app (higher tiers allow more): every worker shares them.
    hubspot_requests_per_10s: int = 100
    hubspot_searches_per_s: int = 5
    # Signs personal links and seals platform tokens. Required (32+ bytes) with a server
    # database: every process, dyno and `heroku run` must share it. With SQLite (one
    # machine) a key is generated once under INSTANCE_DIR when it is unset.
    secret_key: SecretStr | None = None
    # How long a personal link holds. An agent page in use renews its own link, so only
    # a link nobody opens for this long dies; an operator's sign-in is short.
    agent_link_ttl_days: float = Field(default=30.0, gt=0, le=3650)
    operator_link_ttl_hours: float = Field(default=12.0, gt=0, le=24 * 90)
    # Who may frame the HubSpot calling widget (CSP frame-ancestors): HubSpot's app hosts.
    hubspot_frame_origins: str = "https://app.hubspot.com https://*.hubspot.com"
    # Open streams (tabs, the HubSpot window) one agent may hold in one web process.
    agent_streams_per_agent: int = Field(default=4, ge=1, le=100)
    # Click-to-call policy (see docs/security.md): phonenumbers' number types allowed,
    # and ISO countries allowed (empty: DEFAULT_REGION's only; `*`: any country).
    # VoIP and toll-free are national-rate or free to call, and sales teams dial them
    # (France's 09 numbers are VoIP); premium-rate and the like can never be allowed.
    dial_allowed_types: str = "fixed_line,mobile,fixed_line_or_mobile,voip,toll_free"
    dial_allowed_countries: str = ""
    # Per-agent click-to-call rate limits, shared by every web process through Redis.
    dial_max_per_minute: int = Field(default=6, ge=1, le=10_000)
    dial_max_per_hour: int = Field(default=60, ge=1, le=100_000)
    # The HubSpot account id in record links; asked of HubSpot's account-info API if unset.
    hubspot_portal_id: str = ""
    # How long a CRM contact lookup is reused (the pop and the call log share it).
    contact_cache_s: float = 300.0
    contact_cache_miss_s: float = 30.0
    # A ringing pop left without news (lost "ended" webhook) closes after this long.
    pop_ttl_s: float = 600.0
    # gunicorn threads per web process, and how many of them agent pages may hold: the
    # rest stay free for webhooks (a platform retrying into a full server loses calls).
    web_threads: int = 32
    webhook_threads: int = 8
    # Log lines: "text" (the greppable key=value lines) or "json" (one JSON object per
    # line, for log platforms that index fields; worker/core/log_format.py).
    log_format: Literal["text", "json"] = "text"
    # Error reports to Sentry, off when unset; events are scrubbed of bodies, credentials
    # and every configured secret before they leave (worker/core/error_reporting.py).
    sentry_dsn: SecretStr | None = None
    # Lets a Prometheus scraper read /metrics with `Authorization: Bearer <token>` (an
    # operator's sign-in works too). 32+ bytes, like SECRET_KEY; unset: operators only.
    metrics_token: SecretStr | None = None

    # Click-to-call: each platform's API, enabled when its credentials are set.
    kavkom_api_token: SecretStr | None = None
    kavkom_domain_uuid: str = ""
    kavkom_api_base_url: str = "https://api.kavkom.com"
    kwebbl_api_base_url: str = "https://realtime.api.kwebbl.net/v100"
    kwebbl_access_token: SecretStr | None = None
    kazoo_api_url: str = ""
    kazoo_account_id: str = ""
    kazoo_auth_token: SecretStr | None = None
    # Kwebbl's OAuth2 app (the authorization code grant connects the company account).
    kwebbl_client_id: str = ""
    kwebbl_client_secret: SecretStr | None = None
    kwebbl_auth_base_url: str = "https://realtime.api.kwebbl.net"
    # company.users: `callhook agents discover` lists the company's extensions.
    kwebbl_scopes: str = "calls.events calls.create company.users"
    # Kavkom's /calls WebSocket (the optional `listener` process).
    kavkom_refresh_token: SecretStr | None = None
    kavkom_live_url: str = "https://live.kavkom.com"
    kavkom_listen_extensions: str = ""  # comma-separated: one connection per extension
    uis_call_api_url: str = "https://callapi.uiscom.ru/v4.0"
    # The Data API lists employees for `callhook agents discover` (same access token).
    uis_data_api_url: str = "https://dataapi.uiscom.ru/v2.0"
    uis_access_token: SecretStr | None = None
    uis_virtual_phone_number: str = ""

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 country code phonenumbers knows")
        return region

    @field_validator("dial_allowed_types")
    @classmethod
    def _dialable_types(cls, value: str) -> str:
        # Imported here: settings import nothing of callhook's at start-up.
        from worker.core.dial_rules import normalise_allowed_types

        return normalise_allowed_types(value)

    @field_validator("dial_allowed_countries")
    @classmethod
    def _dialable_countries(cls, value: str) -> str:
        from worker.core.dial_rules import normalise_allowed_countries

        return normalise_allowed_countries(value)

    @field_validator("hubspot_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("hubspot_frame_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        origins = value.replace(",", " ").split()
        pattern = re.compile(r"https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?")
        bad = [o for o in origins if not pattern.fullmatch(o)]
        if not origins or bad:
            raise ValueError(
                f"{' '.join(bad) or '(empty)'}: list origins such as https://app.hubspot.com"
            )
        return " ".join(origins)

    @field_validator("secret_key", "metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip().encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_KEY_BYTES} bytes; "
                "generate one with `callhook secret`"
            )
        return value

    @model_validator(mode="after")
    def _shared_secret_for_shared_database(self) -> Settings:
        if self.secret_key is None and not self.sqlalchemy_url_is_sqlite:
            raise ValueError(
                "SECRET_KEY must be set (32+ bytes) when DATABASE_URL is a server database: "
                "every process must sign links and seal tokens with the same key. "
                "Generate one with `callhook secret`"
            )
        return self

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("hubspot_access_token", "sentry_dsn")
    @classmethod
    def _blank_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @property
    def sqlalchemy_url_is_sqlite(self) -> bool:
        """SQLite (the embedded default or a file): a one-machine database."""
        url = self.database_url.strip()
        return not url or url.startswith("sqlite")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL SQLAlchemy needs.

        Heroku hands out ``postgres://`` URLs, which SQLAlchemy 2 refuses; the
        psycopg 3 driver is the one installed.
        """
        url = self.database_url.strip()
        if not url:
            self.instance_dir.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{(self.instance_dir / 'callhook.db').resolve()}"
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    def signing_key(self) -> str:
        """SECRET_KEY, or one generated once and kept under INSTANCE_DIR (one-machine use)."""
        if self.secret_key is not None and self.secret_key.get_secret_value().strip():
            return self.secret_key.get_secret_value()
        path = self.instance_dir / "secret_key"
        if not path.exists():
            # Written aside, then linked into place: two processes starting together
            # agree on whichever key was linked first.
            self.instance_dir.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f"secret_key.{os.getpid()}")
            draft.write_text(secrets.token_urlsafe(32))
            draft.chmod(0o600)
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
            draft.unlink()
        return path.read_text().strip()

    @property
    def dry_run(self) -> bool:
        """Without a HubSpot token the worker records what it would send instead."""
        return self.hubspot_access_token is None


def load_settings() -> Settings:
    """Read and validate the environment, turning pydantic's report into one clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("invalid environment:\n  " + "\n  ".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache between apps)."""
    return load_settings()
