"""Several station nodes on one PostgreSQL: leases, routed commands, stored session events.

* ``charge_point_leases`` — which node holds each charge point's connection:
  the holder's node id, the connection's epoch (raised by every new
  authenticated connection, on any node), its OCPP version, and an expiry the
  holder renews. A newer connection takes the row over; a dead node's rows
  expire.
* ``cluster_commands`` — a command for a charge point held by another node: a
  durable row the holder claims, runs on its connection and answers in the row
  (LISTEN/NOTIFY wake both sides; the rows are the truth).
* ``session_event_log`` — every session event (meter, status, settled) with a
  per-session sequence, so an agent's stream on any node sees all of them in
  order and resumes after ``Last-Event-ID``.

The tables exist on SQLite too (one schema), where only one node runs.

Revision ID: 0010_cluster
Revises: 0011_password_verifier (the head when it landed; numbers were reserved per helper)
"""

import sqlalchemy as sa
from alembic import op

from station.store.base import UtcDateTime

revision = "0010_cluster"
down_revision = "0011_password_verifier"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charge_point_leases",
        sa.Column("charge_point_id", sa.String(48), primary_key=True),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("ocpp_version", sa.String(16), nullable=True),
        sa.Column("acquired_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_charge_point_leases_node", "charge_point_leases", ["node_id"])
    op.create_table(
        "cluster_commands",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("target_node", sa.String(64), nullable=False),
        # None: nobody waits for the answer (a posted command).
        sa.Column("origin_node", sa.String(64), nullable=True),
        sa.Column("charge_point_id", sa.String(48), nullable=False),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # pending | running | done
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("deadline", UtcDateTime(), nullable=False),
        sa.Column("answered_at", UtcDateTime(), nullable=True),
    )
    op.create_index(
        "ix_cluster_commands_target_state", "cluster_commands", ["target_node", "state"]
    )
    op.create_table(
        "session_event_log",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("session_event_log")
    op.drop_index("ix_cluster_commands_target_state", "cluster_commands")
    op.drop_table("cluster_commands")
    op.drop_index("ix_charge_point_leases_node", "charge_point_leases")
    op.drop_table("charge_point_leases")
