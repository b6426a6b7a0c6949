"""The station's configuration: one pydantic-settings object, built in `main`.

Nothing reads the environment at import time. Tests pass a literal
``Settings(...)``; `chargepay serve` builds one from ``CHARGEPAY_*`` variables
and an optional ``.env`` file.

Every field carries a ``description`` saying what a good value looks like:
`chargepay` prints it after the error when a value is refused, so a bad
setting is one line naming the variable, what is wrong and what to set.
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from pathlib import Path

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_BACKENDS = ("sqlite", "postgresql", "postgres")


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{Path.cwd() / 'chargepay.db'}"


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _http_url(value: str | None, what: str) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"{what} must start with http:// or https://")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHARGEPAY_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = Field(
        default_factory=default_database_url,
        description="sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE",
    )
    http_host: str = Field(default="127.0.0.1", description="an address to listen on")
    http_port: int = Field(default=8080, ge=0, le=65535, description="a port 0–65535 (0: any)")
    ocpp_host: str = Field(default="127.0.0.1", description="an address to listen on")
    ocpp_port: int = Field(default=9000, ge=0, le=65535, description="a port 0–65535 (0: any)")
    # Load balancers in front of the station whose X-Forwarded-For is believed, on both
    # ports; empty: every limit counts the peer's own address (docs/cluster.md).
    trusted_proxies: str = Field(
        default="", description="addresses or networks, comma-separated (e.g. 10.0.0.5,10.1.0.0/16)"
    )
    # Public base URL of the HTTP API, used as the MPP realm and in signatures.
    public_url: str | None = Field(
        default=None, description="the API's public base URL, e.g. https://pay.example.net"
    )
    node_id: str = Field(
        default="node-1",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="1–64 letters, digits, '.', '_' or '-'",
    )
    # Several nodes on one PostgreSQL (docs/cluster.md): how long a node's hold on a
    # charge point lasts unrenewed (renewed every third of it); a dead node's ends then.
    cluster_lease_s: float = Field(default=15.0, ge=1, le=600, description="seconds, 1–600")
    # Graceful shutdown (SIGTERM, Station.stop()): each stage's deadline before it is cut off.
    shutdown_timeout_s: float = Field(default=10.0, gt=0, description="seconds, more than 0")

    admin_token: SecretStr | None = Field(
        default=None, description="a random bearer token of 24 characters or more"
    )
    # Signs offers, binds MPP challenge ids (HMAC) and signs receipts.
    secret_key: SecretStr | None = Field(
        default=None, description="a random secret of 32 characters or more"
    )
    stripe_api_key: SecretStr | None = Field(
        default=None, description="a Stripe secret key, sk_test_… or sk_live_…"
    )
    stripe_api_base: str | None = Field(
        default=None, description="a Stripe-compatible base URL, e.g. http://127.0.0.1:8420"
    )

    # OCPP
    ocpp_tls_cert: FilePath | None = Field(
        default=None, description="the path of an existing PEM certificate (chain) file"
    )
    ocpp_tls_key: FilePath | None = Field(
        default=None, description="the path of an existing PEM private key file"
    )
    # Client CAs for security profile 3 (mutual TLS).
    ocpp_tls_ca: FilePath | None = Field(
        default=None, description="the path of an existing PEM file of client CA certificates"
    )
    ocpp_max_frame_bytes: int = Field(default=1_048_576, gt=0)
    # RFC 7692 permessage-deflate when a charge point offers it (OCPP 2.x requires
    # support); each such connection holds zlib state (tens of KiB).
    ocpp_compression: bool = True
    ocpp_call_timeout_s: float = Field(default=30.0, gt=0)
    # From TCP accept to the complete HTTP request of the handshake (TLS included);
    # then the handshake may wait this much more for its password check (a queue in
    # a reconnect storm).
    ocpp_open_timeout_s: float = Field(default=10.0, gt=0)
    ocpp_auth_wait_s: float = Field(default=50.0, gt=0)
    # Connections yet to send their HTTP request: at most this many (and at most a
    # quarter of the open-file limit); past it the oldest is closed.
    ocpp_max_pending_handshakes: int = Field(default=1000, gt=0)
    # Accept failures (EMFILE, …) are logged once per interval, with their count.
    ocpp_accept_log_interval_s: float = Field(default=60.0, gt=0)
    # websockets' keepalive: a ping every interval, the connection closed without a pong.
    ocpp_ping_interval_s: float = Field(default=20.0, gt=0)
    ocpp_ping_timeout_s: float = Field(default=20.0, gt=0)
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
    ocpp_free_vend: bool = Field(default=False, description="true or false")
    # An end of transaction the station could not store (database outage) is asked
    # for again once its charge point has been back this long without resending it.
    ocpp_missing_end_after_s: float = Field(default=60.0, gt=0, description="seconds, more than 0")

    # Payments and negotiation
    stripe_timeout_s: float = Field(default=20.0, gt=0, description="seconds, more than 0")
    challenge_ttl_s: int = Field(default=300, gt=0, description="whole seconds, more than 0")
    # MPP stripe method (draft-stripe-authorize): the station's Stripe Business Network
    # profile, which an agent's Shared Payment Token is scoped to, and the payment method
    # types it takes. The default is a sandbox placeholder; set your own profile in production.
    mpp_network_id: str = Field(
        default="profile_chargepay_sandbox",
        min_length=1,
        max_length=255,
        pattern=r"^\S+$",
        description="a Stripe Business Network profile id, e.g. profile_1Mq…",
    )
    mpp_payment_method_types: str = Field(
        default="card",
        pattern=r"^[a-z_]+(,[a-z_]+)*$",
        description="Stripe payment method types, comma-separated, e.g. card,link",
    )
    # The MPP intents a 402 offers, in order of preference: `authorize` (a capped hold,
    # captured at the end) and `charge` (the registered intent: the cap charged at once,
    # the unused part refunded at settlement).
    mpp_intents: str = Field(
        default="authorize,charge",
        pattern=r"^(authorize|charge)(,(authorize|charge))?$",
        description="authorize, charge, or both comma-separated (authorize,charge)",
    )
    # Unregistered payers (off by default): a standard MPP client with no RFC 9421 key may
    # negotiate and pay, the payment being its authentication, within these ceilings (in
    # default_currency): per session, and per payment method per day (24 h).
    open_payers: bool = False
    open_payer_limit_per_session: Decimal = Field(
        default=Decimal("50"), gt=0, le=100_000, description="an amount, more than 0"
    )
    open_payer_limit_per_method_per_day: Decimal = Field(
        default=Decimal("100"), gt=0, le=1_000_000, description="an amount, more than 0"
    )
    # Unregistered payers act as one agent, so its live-negotiation ceiling is the station's
    # for all of them; each client site (address, IPv6 /64) also opens at most
    # max_open_negotiations_per_agent a minute, so one payer cannot take it from the rest.
    open_payer_max_live_negotiations: int = Field(default=1000, gt=0)
    offer_ttl_s: int = Field(default=300, gt=0, description="whole seconds, more than 0")
    negotiation_max_rounds: int = Field(
        default=5, ge=1, le=50, description="a whole number from 1 to 50"
    )
    reconcile_interval_s: float = Field(default=60.0, gt=0, description="seconds, more than 0")
    default_currency: str = Field(
        default="usd", description="an ISO 4217 code in lower case, e.g. usd or eur"
    )
    list_price_per_kwh: Decimal = Field(
        default=Decimal("0.45"), gt=0, description="a decimal amount more than 0, e.g. 0.45"
    )
    floor_price_per_kwh: Decimal = Field(
        default=Decimal("0.30"), gt=0, description="a decimal amount more than 0, e.g. 0.30"
    )
    session_fee: Decimal = Field(
        default=Decimal("0.50"), ge=0, description="a decimal amount, 0 or more, e.g. 0.50"
    )
    # A session authorised but never started is cancelled (its hold released) after this.
    session_start_timeout_s: float = Field(default=600.0, gt=0, description="seconds, more than 0")
    # A stopping session whose charge point has not ended the transaction this long after
    # the first stop is ended by the station (settled for what was metered, at most the
    # cap); what the charge point delivers after that is an ``unbilled_energy`` anomaly.
    session_stop_timeout_s: float = Field(default=300.0, gt=0, description="seconds, more than 0")
    # Tests only: a named crash point (e.g. "crash_after_capture_intent" → os._exit).
    fault_inject: str | None = Field(default=None, description="tests only: a crash point name")

    # Agent identity
    signature_max_skew_s: int = Field(default=60, gt=0, description="whole seconds, more than 0")
    max_body_bytes: int = Field(default=65_536, gt=0, description="bytes, more than 0")

    # Hostile load (issue 15). Wrong operator tokens per client address and minute
    # before 429 (the right token is never refused).
    admin_auth_failures_per_minute: int = Field(default=10, gt=0)
    # GET /metrics takes this bearer token or the admin token (never open to all).
    metrics_token: SecretStr | None = None
    # Per agent: negotiations open at once, and session event streams (SSE) open at once.
    max_open_negotiations_per_agent: int = Field(default=20, gt=0)
    max_event_streams_per_agent: int = Field(default=5, gt=0)
    # Per agent and client address: signed requests being worked on at once (429 past it),
    # counted before the signature check, so a burst cannot take the database pool.
    max_requests_in_flight_per_agent: int = Field(default=16, gt=0)
    # Per client address, over every keyid: a flood of made-up keyids (each one a look-up
    # and a 401) cannot take the pool either. Above the per-agent figure, for cars behind NAT.
    max_requests_in_flight_per_address: int = Field(default=64, gt=0)
    # Negotiations for unknown charge points per agent and minute before all its opens get 429.
    unknown_charge_points_per_minute: int = Field(default=10, gt=0)
    # An event stream whose client takes no data for this long is closed.
    event_stream_send_timeout_s: float = Field(default=30.0, gt=0)
    # HTTP: a request's head (request line and headers) must arrive within this.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    # HTTP: a request body must be complete within this of the route's first read (else 408).
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    # HTTP: an idle keep-alive connection is closed after this.
    http_keep_alive_s: int = Field(default=5, gt=0)

    log_level: str = Field(default="INFO", description="one of " + ", ".join(LOG_LEVELS))
    log_format: str = Field(default="json", pattern="^(json|text)$", description="json or text")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL") from None
        backend = url.get_backend_name()
        if backend not in DATABASE_BACKENDS:
            raise ValueError(f"unsupported database {backend!r}")
        return value

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isascii() or not value.isalpha() or not value.islower():
            raise ValueError("not a lower-case three-letter currency code")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError("unknown log level")
        return value.upper()

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        for item in _items(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or a network") from None
        return ",".join(_items(value))

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(item, strict=False) for item in _items(self.trusted_proxies)
        )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return _http_url(value, "the public URL")

    @field_validator("stripe_api_base")
    @classmethod
    def _stripe_base(cls, value: str | None) -> str | None:
        return _http_url(value, "the Stripe base URL")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.ocpp_tls_cert is None) != (self.ocpp_tls_key is None):
            missing = "ocpp_tls_key" if self.ocpp_tls_key is None else "ocpp_tls_cert"
            raise ValueError(
                f"TLS needs both a certificate and a key; set CHARGEPAY_{missing.upper()}"
            )
        if self.ocpp_tls_ca is not None and self.ocpp_tls_cert is None:
            raise ValueError(
                "mutual TLS (CHARGEPAY_OCPP_TLS_CA) needs CHARGEPAY_OCPP_TLS_CERT and _KEY"
            )
        return self
