"""The station's configuration: one pydantic-settings object, built in `main`.

Nothing reads the environment at import time. Tests pass a literal
``Settings(...)``; `chargepay serve` builds one from ``CHARGEPAY_*`` variables
and an optional ``.env`` file.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{Path.cwd() / 'chargepay.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHARGEPAY_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = Field(default_factory=default_database_url)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    ocpp_host: str = "127.0.0.1"
    ocpp_port: int = Field(default=9000, ge=0, le=65535)
    # Public base URL of the HTTP API, used as the MPP realm and in signatures.
    public_url: str | None = None
    node_id: str = "node-1"
    # Graceful shutdown (SIGTERM, Station.stop()): each stage's deadline before it is cut off.
    shutdown_timeout_s: float = Field(default=10.0, gt=0)

    admin_token: SecretStr | None = None
    # Signs offers, binds MPP challenge ids (HMAC) and signs receipts.
    secret_key: SecretStr | None = None
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None

    # OCPP
    ocpp_tls_cert: Path | None = None
    ocpp_tls_key: Path | None = None
    ocpp_tls_ca: Path | None = None  # client CAs for security profile 3 (mutual TLS)
    ocpp_max_frame_bytes: int = Field(default=1_048_576, gt=0)
    ocpp_call_timeout_s: float = Field(default=30.0, gt=0)
    # From TCP accept to the end of the WebSocket handshake (TLS included).
    ocpp_open_timeout_s: float = Field(default=10.0, gt=0)
    ocpp_heartbeat_interval_s: int = Field(default=300, gt=0)
    # Failed logins (README "OCPP security"): the first `free` failures of an
    # (address, id) pair are answered at once, then each waits twice as long as
    # the last, from `delay` up to `max_delay`; past the per-address ceiling, a
    # password needing a hash check gets 429 (certificates and cached ones pass).
    ocpp_auth_free_failures: int = Field(default=3, ge=0)
    ocpp_auth_failure_delay_s: float = Field(default=0.5, ge=0)
    ocpp_auth_failure_max_delay_s: float = Field(default=8.0, ge=0)
    ocpp_auth_failures_per_address_per_minute: int = Field(default=1200, gt=0)
    # Keys each failure table keeps (least recently failed forgotten first).
    ocpp_auth_max_entries: int = Field(default=10_000, gt=0)
    # Threads checking password hashes (0: one per CPU).
    ocpp_auth_threads: int = Field(default=0, ge=0)
    # Let charge points start on id tokens no session claims (their own RFID
    # cards, a private depot): such charging is neither priced nor paid.
    ocpp_free_vend: bool = False

    # Payments and negotiation
    stripe_timeout_s: float = Field(default=20.0, gt=0)
    challenge_ttl_s: int = Field(default=300, gt=0)
    offer_ttl_s: int = Field(default=300, gt=0)
    negotiation_max_rounds: int = Field(default=5, ge=1, le=50)
    reconcile_interval_s: float = Field(default=60.0, gt=0)
    default_currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")
    list_price_per_kwh: Decimal = Field(default=Decimal("0.45"), gt=0)
    floor_price_per_kwh: Decimal = Field(default=Decimal("0.30"), gt=0)
    session_fee: Decimal = Field(default=Decimal("0.50"), ge=0)
    # A session authorised but never started is cancelled (its hold released) after this.
    session_start_timeout_s: float = Field(default=600.0, gt=0)
    # Tests only: a named crash point (e.g. "crash_after_capture_intent" → os._exit).
    fault_inject: str | None = None

    # Agent identity
    signature_max_skew_s: int = Field(default=60, gt=0)
    max_body_bytes: int = Field(default=65_536, gt=0)

    # Hostile load (issue 15). Wrong operator tokens per client address and minute
    # before 429 (the right token is never refused).
    admin_auth_failures_per_minute: int = Field(default=10, gt=0)
    # GET /metrics takes this bearer token or the admin token (never open to all).
    metrics_token: SecretStr | None = None
    # Per agent: negotiations open at once, and session event streams (SSE) open at once.
    max_open_negotiations_per_agent: int = Field(default=20, gt=0)
    max_event_streams_per_agent: int = Field(default=5, gt=0)
    # An event stream whose client takes no data for this long is closed.
    event_stream_send_timeout_s: float = Field(default=30.0, gt=0)
    # HTTP: a request's head (request line and headers) must arrive within this.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    # HTTP: an idle keep-alive connection is closed after this.
    http_keep_alive_s: int = Field(default=5, gt=0)

    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
