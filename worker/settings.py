"""The one place the environment is read.

Everything else receives a `Settings` (or the values it needs) as an argument. Tests build
one with `Settings.from_env({...})` instead of mutating `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.pipeline.client_address import FORWARDING_HEADERS, parse_networks
from worker.pipeline.iphash import parse_ip_list

# The constant every secret defaulted to once: refused, since anyone can read it here.
OLD_DEFAULT_SECRET = "dev-only-secret-change-me"
MIN_SECRET_CHARS = 32
SECRETS = ("ip_hash_secret", "csrf_secret", "unsubscribe_secret")


class InsecureSecrets(ValueError):
    """A secret is unset, too short or a known value: the process must not start."""


class Settings(BaseSettings):
    """Configuration, one field per environment variable of the same name (upper case)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # Where things live
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://127.0.0.1:5432/postgres"
    celery_broker_url: str = ""  # defaults to REDIS_URL (or the Sentinels, when set)
    # High availability: with Sentinels every client asks them for the primary and follows a
    # failover; REDIS_URL then gives only the database number and password.
    redis_sentinels: str = ""  # comma-separated host:port
    redis_sentinel_master: str = ""  # the service name the Sentinels monitor
    key_prefix: str = "sig:"

    # Streams and batching
    shards: int = Field(8, ge=1, le=1024)
    batch_size: int = Field(2000, ge=1, le=100_000)
    block_ms: int = Field(200, ge=1, le=10_000)
    linger_ms: int = Field(50, ge=0, le=1_000)
    claim_idle_ms: int = Field(30_000, ge=1)
    claim_interval_ms: int = Field(5_000, ge=1)
    max_deliveries: int = Field(5, ge=1)
    drain_slice_seconds: float = Field(5.0, gt=0)
    # Under `celery worker --autoscale=MAX,MIN`: drainers beyond MIN run while more than this
    # many entries are queued, and end (so the pool can shrink) once fewer are.
    autoscale_backlog: int = Field(5000, ge=0)
    db_retry_max_seconds: float = Field(30.0, gt=0)
    max_backlog: int = Field(5_000_000, ge=0)  # 0 switches backpressure off
    idempotency_ttl_seconds: int = Field(3_600, ge=1)
    # Idempotency keys remembered per TTL period at most (~150 bytes each in Redis); past it a
    # request still works, its key is just not remembered. 0 = no cap.
    idempotency_max_keys: int = Field(500_000, ge=0)
    # Share of Redis's maxmemory the intake leaves free for the workers (503 backlog_full past
    # it): draining needs a few writes, which a full Redis refuses. 0 = off.
    redis_memory_headroom: float = Field(0.1, ge=0, lt=1)

    # When the intake answers 202: `local` once the primary has the append; `replica` once
    # ACK_REPLICAS replicas have it too (WAIT); `fsync` once it is on the primary's disk.
    ack_durability: Literal["local", "replica", "fsync"] = "local"
    ack_replicas: int = Field(1, ge=1, le=16)
    ack_timeout_ms: int = Field(250, ge=1, le=10_000)

    # Email checks
    check_deliverability: bool = False

    # Secrets: no default. `sigingest api`, workers and beat refuse to start without them
    # (`require_secrets`); `sigingest up` makes its own once (worker/ops/local_secrets.py).
    ip_hash_secret: str = ""
    unsubscribe_secret: str = ""
    unsubscribe_secret_previous: str = ""  # still accepted in unsubscribe links while rotating

    # Intake
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_workers: int = Field(1, ge=1)
    max_body_bytes: int = Field(8192, ge=1)
    body_timeout_seconds: float = Field(10.0, gt=0)
    trusted_proxy_header: str = ""  # "x-forwarded-for" or "forwarded", read only from TRUSTED_PROXIES
    trusted_proxies: str = ""  # comma-separated IPs or CIDRs of the proxies in front of the intake
    ipv6_prefix_length: int = Field(64, ge=1, le=128)  # an IPv6 client is its network of this size
    public_url: str = "http://127.0.0.1:8000"

    # Workers
    worker_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    log_level: str = "INFO"

    # The petition page and its signing form
    csrf_secret: str = ""  # key of the HMAC behind the form's CSRF token
    csrf_max_age_seconds: int = Field(86_400, ge=60)  # a form older than this is refreshed, not accepted
    # Reminder emails
    reminder_every: float = Field(3600.0, gt=0)  # seconds between beat runs of reminders.send_due
    reminder_min_recent: int = Field(10, ge=0)  # signatures in the last 24 h for a petition to qualify
    reminder_min_interval: float = Field(7 * 86_400.0, ge=0)  # seconds between two reminders to a person
    reminder_batch: int = Field(1000, ge=0)  # emails per run at most
    reminder_rate: float = Field(10.0, gt=0)  # emails per second at most
    reminder_page_size: int = Field(500, ge=1)  # prospects chosen per SQL page
    reminder_max_attempts: int = Field(8, ge=1)  # temporary failures before a delivery is failed
    reminder_retry_base_seconds: float = Field(60.0, ge=0)  # backoff: base * 2**(attempts-1)
    reminder_retry_max_seconds: float = Field(3600.0, ge=0)
    reminder_from: str = "Petitions <reminders@localhost>"
    smtp_url: str = "smtp://127.0.0.1:8025"  # smtp://[user:pass@]host:port, smtps://..., file:///dir
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(30.0, gt=0)
    # Email-confirmed signatures (petitions created or set with --confirm-email)
    confirm_resend_seconds: float = Field(
        3600.0, ge=0
    )  # a pending signer signing again: resend at most this often
    confirm_ttl: float = Field(7 * 86_400.0, gt=0)  # pending signatures older than this expire
    confirm_remind_after: float = Field(86_400.0, gt=0)  # one reminder to confirm, this long after signing
    confirm_batch: int = Field(2000, ge=1)  # confirmation emails per send run at most
    confirm_every: float = Field(10.0, gt=0)  # seconds between beat runs of reminders.send_confirmations

    @field_validator(
        "reminder_every", "reminder_min_interval", "confirm_resend_seconds", "confirm_ttl",
        "confirm_remind_after", "confirm_every", mode="before",
    )  # fmt: skip
    @classmethod
    def _accept_duration_suffixes(cls, value: Any) -> Any:
        """Seconds, or a number with s/m/h/d ("7d", "1h")."""
        units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
        if isinstance(value, str) and value.strip()[-1:].lower() in units:
            return float(value.strip()[:-1]) * units[value.strip()[-1].lower()]
        return value

    # `sigingest up` (embedded servers, logs, beat schedule) and `sigingest demo`
    data_dir: str = ".sigingest"
    # The embedded Redis's memory ceiling (noeviction: writes refused, nothing evicted); "0" = none
    redis_maxmemory: str = Field("1gb", pattern=r"^[0-9]+(b|kb|mb|gb)?$")
    # Operating it: metrics endpoints
    # Where a worker's prefork children write their metrics for its endpoint to sum. Empty: a
    # fresh private directory. (Not prometheus-client's own variable, which it reads by itself.)
    worker_metrics_dir: str = ""
    worker_metrics_port: int = Field(9808, ge=0, le=65535)  # a worker host's /metrics; 0 = off
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 to be scraped from other hosts
    # Queue figures are read from Redis at most once per this many seconds, whatever the scrapes
    metrics_cache_seconds: float = Field(1.0, ge=0)
    # When set, both /metrics endpoints answer only `Authorization: Bearer <token>` (401 else)
    metrics_token: str = ""
    # Where the intake processes behind one port share their request figures, so any one of them
    # answers a scrape for all. `sigingest api --workers N` (N > 1) makes a fresh one when empty.
    intake_metrics_dir: str = ""
    # Trustworthy counts: abuse limits, the suspicious-share report
    abuse_checks: bool = True  # rate limits and allow/block lists in the worker
    rate_burst_limit: int = Field(1, ge=0)  # signatures per hashed IP per petition per burst window
    rate_burst_seconds: int = Field(60, ge=1)
    rate_sustained_limit: int = Field(5, ge=0)  # 0 switches a limit off
    rate_sustained_seconds: int = Field(300, ge=1)
    # Rate windows (one per hashed IP) kept per petition; past it the least recently used go
    rate_windows_per_petition: int = Field(100_000, ge=1)
    allowed_ips: str = ""  # comma-separated IPs or small CIDRs, hashed with IP_HASH_SECRET
    allowed_domains: str = ""  # comma-separated; subdomains included
    blocked_domains: str = ""
    blocked_emails: str = ""  # canonicalised before use
    suspicious_share: float = Field(0.5, gt=0, le=1)
    suspicious_min_signatures: int = Field(20, ge=1)
    suspicious_ignore_domains: str = "gmail.com,yahoo.com,hotmail.com,outlook.com,icloud.com"
    count_settle_seconds: float = Field(1.0, ge=0)  # wait before re-publishing lowered counts

    @field_validator("database_url")
    @classmethod
    def _accept_both_postgres_schemes(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("DATABASE_URL must start with postgresql:// or postgresql+psycopg://")
        return value

    @model_validator(mode="after")
    def _addresses_make_sense(self) -> Settings:
        parse_ip_list(self.allowed_ips, self.ipv6_prefix_length)  # refuse a bad entry at start
        parse_networks(self.trusted_proxies, "TRUSTED_PROXIES")
        header = self.trusted_proxy_header.strip().lower()
        if header and header not in FORWARDING_HEADERS:
            raise ValueError("TRUSTED_PROXY_HEADER must be x-forwarded-for or forwarded (RFC 7239)")
        if header and not self.trusted_proxies.strip():
            # Read from any peer, the header is whatever the client wrote: every limit bends.
            raise ValueError(
                "TRUSTED_PROXY_HEADER is set but TRUSTED_PROXIES is empty: list the addresses "
                "of your proxies (IPs or CIDRs) in TRUSTED_PROXIES, or unset TRUSTED_PROXY_HEADER"
            )
        return self

    def secret_problems(self) -> list[str]:
        """One sentence per secret that is unset, shorter than `MIN_SECRET_CHARS` or the old
        default, naming its variable; empty when all are fit for use."""
        problems = []
        for name in SECRETS:
            value = getattr(self, name)
            if not value:
                problems.append(f"{name.upper()} is not set")
            elif value == OLD_DEFAULT_SECRET:
                problems.append(f"{name.upper()} is the old published default")
            elif len(value) < MIN_SECRET_CHARS:
                problems.append(f"{name.upper()} is shorter than {MIN_SECRET_CHARS} characters")
        return problems

    def require_secrets(self) -> None:
        """Raise `InsecureSecrets` naming every unfit secret. Called where a long-running
        process starts (`sigingest api`, Celery workers and beat)."""
        problems = self.secret_problems()
        if problems:
            raise InsecureSecrets(
                "refusing to start: " + "; ".join(problems) + ". Set each to a random value of at "
                f"least {MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`); "
                "`sigingest up` makes its own for a local run"
            )

    @property
    def forwarding_header(self) -> str:
        """TRUSTED_PROXY_HEADER lowercased ("" when unset)."""
        return self.trusted_proxy_header.strip().lower()

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_host_ports(cls, value: str) -> str:
        _parse_sentinels(value)  # refuse a bad REDIS_SENTINELS at start, naming the entry
        return value

    @model_validator(mode="after")
    def _sentinels_name_their_master(self) -> Settings:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the monitored service name)")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `environ` (default: the process environment) plus overrides."""
        source = os.environ if environ is None else environ
        fields = {name.lower(): value for name, value in source.items()}
        known = {k: v for k, v in fields.items() if k in cls.model_fields}
        return cls.model_validate({**known, **overrides})

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg 3 driver named, whichever form was given."""
        rest = self.database_url.split("://", 1)[1]
        return f"postgresql+psycopg://{rest}"

    @property
    def libpq_url(self) -> str:
        """DATABASE_URL in the plain form libpq and psycopg.connect() accept."""
        return "postgresql://" + self.database_url.split("://", 1)[1]

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; empty without Sentinels."""
        return _parse_sentinels(self.redis_sentinels)

    @property
    def broker_url(self) -> str:
        """CELERY_BROKER_URL, else kombu's `sentinel://` list with REDIS_URL's password and
        database when Sentinels are set, else REDIS_URL."""
        if self.celery_broker_url or not self.sentinels:
            return self.celery_broker_url or self.redis_url
        parts = urlsplit(self.redis_url)
        auth = f":{parts.password}@" if parts.password else ""
        db = parts.path.lstrip("/") or "0"
        return ";".join(f"sentinel://{auth}{host}:{port}/{db}" for host, port in self.sentinels)

    @property
    def broker_transport_options(self) -> dict[str, Any]:
        """What kombu's Sentinel transport needs beside the URL (nothing for plain Redis)."""
        if self.celery_broker_url or not self.sentinels:
            return {}
        return {"master_name": self.redis_sentinel_master}


def settings_error(exc: Exception) -> str:
    """The sentences of a settings error, without pydantic's framing (for a clean exit message)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            ("".join(f"{part}".upper() + ": " for part in error["loc"]) + str(error["msg"])).replace(
                "Value error, ", ""
            )
            for error in exc.errors()
        )
    return str(exc)


def _parse_sentinels(value: str) -> list[tuple[str, int]]:
    found = []
    for entry in filter(None, (part.strip() for part in value.split(","))):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS entry {entry!r} is not host:port")
        found.append((host.strip("[]"), int(port)))
    return found
