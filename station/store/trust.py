"""Tables of the trust area: agents that may pay, their limits and status."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Integer, String, Text
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
