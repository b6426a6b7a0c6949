"""Tables of several nodes on one PostgreSQL (`station.cluster`): leases, commands, events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from station.store.base import Base, UtcDateTime


class ChargePointLeaseRow(Base):
    """Which node holds a charge point's connection, until when (renewed by the holder)."""

    __tablename__ = "charge_point_leases"
    __table_args__ = (Index("ix_charge_point_leases_node", "node_id"),)

    charge_point_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64))
    # Raised by every new authenticated connection under the id, on any node.
    epoch: Mapped[int] = mapped_column(BigInteger)
    ocpp_version: Mapped[str | None] = mapped_column(String(16))
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ClusterCommandRow(Base):
    """A command for a charge point held by another node, and its answer."""

    __tablename__ = "cluster_commands"
    __table_args__ = (Index("ix_cluster_commands_target_state", "target_node", "state"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    target_node: Mapped[str] = mapped_column(String(64))
    origin_node: Mapped[str | None] = mapped_column(String(64))
    charge_point_id: Mapped[str] = mapped_column(String(48))
    command: Mapped[str] = mapped_column(String(32))
    args: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    deadline: Mapped[datetime] = mapped_column(UtcDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class SessionEventRow(Base):
    """A session event as its stream shows it, numbered per session from 1."""

    __tablename__ = "session_event_log"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
