"""Tables of the charging area, and the functions the CLI and the admin API call.

Tables: ``charge_points`` (identity, hashed password, what it said at boot,
whether and where it is connected), ``connectors`` (last status per EVSE and
connector), ``transactions`` (the integer ``id`` is the OCPP 1.6
``transactionId``; ``transaction_ref`` is the charge point's id in 2.x and
``str(id)`` in 1.6), ``meter_samples`` (every sampled value received),
``anomalies`` (what metering refused, unknown transactions, …) and
``ocpp_messages`` (append-only log of every frame in and out, tokens and
passwords redacted).

Passwords are hashed with scrypt and a per-row salt. OCPP passwords are
machine-generated secrets of 16–40 characters (PROTOCOL §5), so the cost is
moderate (N=2¹², about 10 ms): a guess-resistant hash for a high-entropy secret,
cheap enough for thousands of charge points to reconnect after a restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from station.domain.session import SessionStatus
from station.errors import Conflict, NotFound, ValidationError
from station.logs import get_logger
from station.store import audit
from station.store.base import Base, Energy, UtcDateTime, utcnow
from station.store.db import Database
from station.store.payments import SessionRow

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets 64 bits.
BigId = BigInteger().with_variant(Integer(), "sqlite")

_log = get_logger(__name__)
_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,48}$")
_SCRYPT = {"n": 2**12, "r": 8, "p": 1}


class ChargePointRow(Base):
    __tablename__ = "charge_points"

    charge_point_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    # A keyed HMAC beside the scrypt hash (station.ocpp.auth.KeyedVerifier), or None.
    password_verifier: Mapped[str | None] = mapped_column(String(100))
    ocpp_version: Mapped[str | None] = mapped_column(String(16))
    vendor: Mapped[str | None] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(String(50))
    firmware_version: Mapped[str | None] = mapped_column(String(50))
    serial_number: Mapped[str | None] = mapped_column(String(50))
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    node_id: Mapped[str | None] = mapped_column(String(64))
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Soft removal (0007): the row and its history stay, it can no longer connect.
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ConnectorRow(Base):
    __tablename__ = "connectors"

    charge_point_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.charge_point_id"), primary_key=True
    )
    evse_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(50))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TransactionRow(Base):
    __tablename__ = "transactions"
    __table_args__ = (UniqueConstraint("charge_point_id", "transaction_ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(ForeignKey("charge_points.charge_point_id"))
    transaction_ref: Mapped[str] = mapped_column(String(64))
    id_token: Mapped[str | None] = mapped_column(String(255))
    # The station's verdict on the id token at the start, and whether a session claimed it
    # (billed): kept so a reconnect or a restart answers as the station decided (0005).
    id_token_accepted: Mapped[bool] = mapped_column(Boolean, server_default=true())
    billed: Mapped[bool] = mapped_column(Boolean, server_default=true())
    evse_id: Mapped[int] = mapped_column(Integer)
    connector_id: Mapped[int] = mapped_column(Integer)
    remote_start_id: Mapped[int | None] = mapped_column(Integer)
    meter_start_wh: Mapped[Decimal | None] = mapped_column(Energy())
    meter_stop_wh: Mapped[Decimal | None] = mapped_column(Energy())
    energy_wh: Mapped[Decimal] = mapped_column(Energy())
    last_register_wh: Mapped[Decimal | None] = mapped_column(Energy())
    last_reading_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_seq_no: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    ended: Mapped[bool] = mapped_column(Boolean, default=False)


class MeterSampleRow(Base):
    __tablename__ = "meter_samples"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Not indexed: written for every sample, read by transaction (0004_hot_path_indexes).
    charge_point_id: Mapped[str] = mapped_column(String(48))
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"), index=True)
    evse_id: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime())
    measurand: Mapped[str] = mapped_column(String(64))
    phase: Mapped[str | None] = mapped_column(String(8))
    context: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(16))
    value: Mapped[Decimal | None] = mapped_column(Numeric(20, 3, asdecimal=True))
    raw: Mapped[str | None] = mapped_column(String(100))
    seq_no: Mapped[int | None] = mapped_column(Integer)


class AnomalyRow(Base):
    __tablename__ = "anomalies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(String(48), index=True)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime | None] = mapped_column(UtcDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OcppMessageRow(Base):
    __tablename__ = "ocpp_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Not indexed: written for every frame, read newest first (0004_hot_path_indexes).
    charge_point_id: Mapped[str] = mapped_column(String(48))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    message_type: Mapped[int] = mapped_column(Integer)  # 2 CALL, 3 CALLRESULT, 4 CALLERROR
    message_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[Any] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


# --- passwords --------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    params = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    return f"scrypt${params}${_b64(salt)}${_b64(digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of a password against its stored hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected),
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def is_valid_charge_point_id(charge_point_id: str) -> bool:
    """Whether a string can be a registered charge point id (anything else is never stored)."""
    return _ID.fullmatch(charge_point_id) is not None


def check_credentials(charge_point_id: str, password: str) -> None:
    if not is_valid_charge_point_id(charge_point_id):
        raise ValidationError("charge_point_id: 1–48 characters of letters, digits and . _ : -")
    if not 16 <= len(password) <= 40:
        raise ValidationError("password: 16–40 characters (OCPP security profile 1/2)")


# --- operator functions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargePointInfo:
    charge_point_id: str
    ocpp_version: str | None
    connected: bool
    node_id: str | None
    vendor: str | None
    model: str | None
    firmware_version: str | None
    last_seen: datetime | None
    removed_at: datetime | None = None


async def register_charge_points(
    db: Database, credentials: Iterable[tuple[str, str]], *, replace: bool = False
) -> None:
    """Register charge points (or, with ``replace``, set new passwords) in one unit.

    A removed charge point's id may be registered again: it gets the new password
    and can connect again (its history stays).
    """
    pairs = list(credentials)
    for charge_point_id, password in pairs:
        check_credentials(charge_point_id, password)
    hashes = await asyncio.to_thread(lambda: [hash_password(p) for _, p in pairs])
    async with db.session() as session:
        ids = [cp for cp, _ in pairs]
        rows = (
            await session.execute(
                select(ChargePointRow.charge_point_id, ChargePointRow.removed_at).where(
                    ChargePointRow.charge_point_id.in_(ids)
                )
            )
        ).all()
        existing = {cp for cp, _ in rows}
        current = sorted(cp for cp, removed_at in rows if removed_at is None)
        if current and not replace:
            raise Conflict(f"charge point already registered: {current[0]}")
        new = [
            {"charge_point_id": cp, "password_hash": h, "connected": False, "created_at": utcnow()}
            for cp, h in zip(ids, hashes, strict=True)
            if cp not in existing
        ]
        if new:
            await session.execute(insert(ChargePointRow), new)
        for cp, h in zip(ids, hashes, strict=True):
            if cp in existing:
                await session.execute(
                    update(ChargePointRow)
                    .where(ChargePointRow.charge_point_id == cp)
                    .values(password_hash=h, password_verifier=None, removed_at=None)
                )


async def register_charge_point(
    db: Database, charge_point_id: str, password: str, *, replace: bool = False
) -> None:
    """Register one charge point; Conflict if it exists (unless ``replace``)."""
    await register_charge_points(db, [(charge_point_id, password)], replace=replace)


async def list_charge_points(db: Database, *, removed: bool = False) -> list[ChargePointInfo]:
    """The registered charge points; with ``removed``, the removed ones too."""
    async with db.reader() as session:
        query = select(ChargePointRow).order_by(ChargePointRow.charge_point_id)
        if not removed:
            query = query.where(ChargePointRow.removed_at.is_(None))
        rows = await session.scalars(query)
        return [
            ChargePointInfo(
                r.charge_point_id,
                r.ocpp_version,
                r.connected,
                r.node_id,
                r.vendor,
                r.model,
                r.firmware_version,
                r.last_seen,
                r.removed_at,
            )
            for r in rows
        ]


async def remove_charge_point(
    db: Database, charge_point_id: str, *, reason: str, actor: str
) -> ChargePointInfo:
    """Soft removal, audited: the charge point can no longer connect; its history stays.

    NotFound for an unknown id; Conflict (409) while one of its sessions is live
    (stop it first, so no hold is left without a meter). Removing a removed one
    changes nothing.
    """
    live_statuses = [s.value for s in SessionStatus if not s.final]
    async with db.session() as session:
        row = await session.get(ChargePointRow, charge_point_id, with_for_update=True)
        if row is None:
            raise NotFound(f"charge point {charge_point_id} is not registered")
        if row.removed_at is None:
            live = await session.scalar(
                select(SessionRow.session_id)
                .where(
                    SessionRow.charge_point_id == charge_point_id,
                    SessionRow.status.in_(live_statuses),
                )
                .limit(1)
            )
            if live is not None:
                raise Conflict(
                    f"charge point {charge_point_id} has a live session {live}; stop it first"
                )
            row.removed_at = utcnow()
            await audit.record(
                session,
                actor=actor,
                action="charge_point.removed",
                subject=charge_point_id,
                data={"reason": reason},
            )
            _log.warning(
                "charge_point.removed", charge_point_id=charge_point_id, actor=actor, reason=reason
            )
        return ChargePointInfo(
            row.charge_point_id,
            row.ocpp_version,
            row.connected,
            row.node_id,
            row.vendor,
            row.model,
            row.firmware_version,
            row.last_seen,
            row.removed_at,
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    password_hash: str
    password_verifier: str | None


async def credentials_of(db: Database, charge_point_id: str) -> Credentials | None:
    """A charge point's scrypt hash and keyed verifier; None if unknown or removed (one 401)."""
    async with db.reader() as session:
        row = (
            await session.execute(
                select(ChargePointRow.password_hash, ChargePointRow.password_verifier).where(
                    ChargePointRow.charge_point_id == charge_point_id,
                    ChargePointRow.removed_at.is_(None),
                )
            )
        ).first()
    return None if row is None else Credentials(row[0], row[1])


async def credentials_of_many(db: Database, ids: list[str]) -> dict[str, Credentials]:
    """`credentials_of` for many ids in one query (the unknown and removed ones left out)."""
    async with db.reader() as session:
        rows = await session.execute(
            select(
                ChargePointRow.charge_point_id,
                ChargePointRow.password_hash,
                ChargePointRow.password_verifier,
            ).where(ChargePointRow.charge_point_id.in_(ids), ChargePointRow.removed_at.is_(None))
        )
        return {cp_id: Credentials(hash_, verifier) for cp_id, hash_, verifier in rows}


async def set_password_verifiers(db: Database, verifiers: dict[str, tuple[str, str]]) -> None:
    """Store keyed verifiers: id -> (the scrypt hash each is tied to, verifier), in one unit.

    A row whose password changed since (another hash) is left alone.
    """
    async with db.session() as session:
        for charge_point_id, (password_hash, verifier) in verifiers.items():
            await session.execute(
                update(ChargePointRow)
                .where(
                    ChargePointRow.charge_point_id == charge_point_id,
                    ChargePointRow.password_hash == password_hash,
                )
                .values(password_verifier=verifier)
            )


async def password_hash_of(db: Database, charge_point_id: str) -> str | None:
    """The stored hash; None for an unknown or removed charge point (the same 401)."""
    async with db.reader() as session:
        return await session.scalar(
            select(ChargePointRow.password_hash).where(
                ChargePointRow.charge_point_id == charge_point_id,
                ChargePointRow.removed_at.is_(None),
            )
        )
