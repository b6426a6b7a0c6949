"""Tables of the trust area: agents, signature nonces, operator switches, spend ledger.

- ``agents``: who may pay, with which key, within which limits, and status.
- ``signature_nonces``: nonces already seen per agent, kept until they expire
  (unique insert, so several station nodes agree on a replay).
- ``operator_switches``: operator-wide switches (``pause``: no new
  authorisations) with who set them and why.
- ``spend_ledger``: one row per session an agent pays for — the hold while it
  is open, the captured amount once settled — which the window limit sums.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from station.store.base import Amount, Base, UtcDateTime, utcnow


class AgentRow(Base):
    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(200))
    # Base64 of the raw 32-byte Ed25519 public key.
    public_key: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    limit_per_session: Mapped[Decimal] = mapped_column(Amount())
    limit_per_window: Mapped[Decimal] = mapped_column(Amount())
    window_hours: Mapped[int] = mapped_column(Integer)
    allowed_charge_points: Mapped[list[str] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended
    suspended_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class NonceRow(Base):
    __tablename__ = "signature_nonces"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class SwitchRow(Base):
    __tablename__ = "operator_switches"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    on: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class SpendRow(Base):
    __tablename__ = "spend_ledger"
    __table_args__ = (Index("ix_spend_ledger_agent_id_created_at", "agent_id", "created_at"),)

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.agent_id"))
    currency: Mapped[str] = mapped_column(String(3))
    # The hold while open; the captured amount (0 when cancelled) once settled.
    amount: Mapped[Decimal] = mapped_column(Amount())
    status: Mapped[str] = mapped_column(String(16))  # held | settled
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
