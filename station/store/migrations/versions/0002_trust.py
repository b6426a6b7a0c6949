"""Trust: agents, signature nonces, operator switches, spend ledger, the audit log.

Revision ID: 0002_trust
Revises: 0001_charging
"""

import sqlalchemy as sa
from alembic import op

from station.store.base import Amount, UtcDateTime

revision = "0002_trust"
down_revision = "0001_charging"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("limit_per_session", Amount(), nullable=False),
        sa.Column("limit_per_window", Amount(), nullable=False),
        sa.Column("window_hours", sa.Integer(), nullable=False),
        sa.Column("allowed_charge_points", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("suspended_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name="pk_agents"),
    )
    op.create_table(
        "signature_nonces",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "nonce", name="pk_signature_nonces"),
    )
    op.create_index(
        "ix_signature_nonces_expires_at", "signature_nonces", ["expires_at"], unique=False
    )
    op.create_table(
        "operator_switches",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("on", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_operator_switches"),
    )
    op.create_table(
        "spend_ledger",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", Amount(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("settled_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name="fk_spend_ledger_agent_id_agents"
        ),
        sa.PrimaryKeyConstraint("session_id", name="pk_spend_ledger"),
    )
    op.create_index(
        "ix_spend_ledger_agent_id_created_at",
        "spend_ledger",
        ["agent_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
        sa.UniqueConstraint("hash", name="uq_audit_log_hash"),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index("ix_spend_ledger_agent_id_created_at", table_name="spend_ledger")
    op.drop_table("spend_ledger")
    op.drop_table("operator_switches")
    op.drop_index("ix_signature_nonces_expires_at", table_name="signature_nonces")
    op.drop_table("signature_nonces")
    op.drop_table("agents")
