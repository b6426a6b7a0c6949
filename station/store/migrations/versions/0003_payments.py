"""Payments: negotiations, offers, challenges, sessions, settlements, tariffs, policies.

Revision ID: 0003_payments
Revises: 0002_trust
"""

import sqlalchemy as sa
from alembic import op

from station.store.base import Amount, Energy, UtcDateTime

revision = "0003_payments"
down_revision = "0002_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "negotiations",
        sa.Column("negotiation_id", sa.String(40), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("energy_kwh", Energy(), nullable=False),
        sa.Column("max_power_kw", Energy(), nullable=True),
        sa.Column("departure_at", UtcDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("max_rounds", sa.Integer(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("current_offer_id", sa.String(40), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("negotiation_id", name="pk_negotiations"),
    )
    op.create_index("ix_negotiations_agent_id", "negotiations", ["agent_id"], unique=False)
    op.create_table(
        "offers",
        sa.Column("offer_id", sa.String(40), nullable=False),
        sa.Column("negotiation_id", sa.String(40), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("tariff", sa.JSON(), nullable=False),
        sa.Column("estimated_cost", Amount(), nullable=False),
        sa.Column("recommended_cap", Amount(), nullable=False),
        sa.Column("valid_until", UtcDateTime(), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["negotiation_id"],
            ["negotiations.negotiation_id"],
            name="fk_offers_negotiation_id_negotiations",
        ),
        sa.PrimaryKeyConstraint("offer_id", name="pk_offers"),
    )
    op.create_index("ix_offers_negotiation_id", "offers", ["negotiation_id"], unique=False)
    op.create_table(
        "payment_challenges",
        sa.Column("challenge_id", sa.String(64), nullable=False),
        sa.Column("negotiation_id", sa.String(40), nullable=False),
        sa.Column("offer_id", sa.String(40), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("challenge_id", name="pk_payment_challenges"),
    )
    op.create_index(
        "ix_payment_challenges_negotiation_id",
        "payment_challenges",
        ["negotiation_id"],
        unique=False,
    )
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("negotiation_id", sa.String(40), nullable=False),
        sa.Column("offer_id", sa.String(40), nullable=False),
        sa.Column("challenge_id", sa.String(64), nullable=False),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("id_token", sa.String(20), nullable=False),
        sa.Column("remote_start_id", sa.Integer(), nullable=False),
        sa.Column("tariff", sa.JSON(), nullable=False),
        sa.Column("cap", Amount(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("energy_wh", Energy(), nullable=False),
        sa.Column("cost", Amount(), nullable=False),
        sa.Column("captured", Amount(), nullable=True),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("transaction_ref", sa.String(64), nullable=True),
        sa.Column("meter_start_wh", Energy(), nullable=True),
        sa.Column("meter_stop_wh", Energy(), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("stopped_at", UtcDateTime(), nullable=True),
        sa.Column("stop_reason", sa.String(64), nullable=True),
        sa.Column("last_reading_at", UtcDateTime(), nullable=True),
        sa.Column("last_active_at", UtcDateTime(), nullable=True),
        sa.Column("payment_reference", sa.String(64), nullable=True),
        sa.Column("payment_status", sa.String(32), nullable=False),
        sa.Column("payment_source", sa.String(255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_sessions"),
        sa.UniqueConstraint("challenge_id", name="uq_sessions_challenge_id"),
        sa.UniqueConstraint("id_token", name="uq_sessions_id_token"),
    )
    op.create_index("ix_sessions_agent_id", "sessions", ["agent_id"], unique=False)
    op.create_index(
        "ix_sessions_status_updated_at", "sessions", ["status", "updated_at"], unique=False
    )
    live = sa.text("status NOT IN ('failed', 'cancelled')")  # one live session per negotiation
    op.create_index(
        "uq_sessions_live_negotiation_id",
        "sessions",
        ["negotiation_id"],
        unique=True,
        sqlite_where=live,
        postgresql_where=live,
    )
    op.create_table(
        "settlements",
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("amount", Amount(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_reference", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(80), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.session_id"], name="fk_settlements_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("session_id", name="pk_settlements"),
    )
    op.create_index("ix_settlements_state", "settlements", ["state"], unique=False)
    op.create_table(
        "tariffs",
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("tariff", sa.JSON(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("charge_point_id", name="pk_tariffs"),
    )
    op.create_table(
        "pricing_policies",
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("charge_point_id", name="pk_pricing_policies"),
    )


def downgrade() -> None:
    op.drop_table("pricing_policies")
    op.drop_table("tariffs")
    op.drop_index("ix_settlements_state", table_name="settlements")
    op.drop_table("settlements")
    op.drop_index("ix_sessions_agent_id", table_name="sessions")
    op.drop_index("ix_sessions_status_updated_at", table_name="sessions")
    op.drop_index("uq_sessions_live_negotiation_id", table_name="sessions")
    op.drop_table("sessions")
    op.drop_index("ix_payment_challenges_negotiation_id", table_name="payment_challenges")
    op.drop_table("payment_challenges")
    op.drop_index("ix_offers_negotiation_id", table_name="offers")
    op.drop_table("offers")
    op.drop_index("ix_negotiations_agent_id", table_name="negotiations")
    op.drop_table("negotiations")
