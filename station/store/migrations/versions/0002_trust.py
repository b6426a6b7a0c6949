"""Trust: agents, signature nonces, operator switches, the audit log.

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
        sa.Column("agent_id", sa.String(64), primary_key=True),
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


def downgrade() -> None:
    op.drop_table("agents")
