"""Charging: charge points, connectors, transactions, meter samples, anomalies, OCPP log.

Revision ID: 0001_charging
Revises:
"""

import sqlalchemy as sa
from alembic import op

from station.store.base import Energy, UtcDateTime

revision = "0001_charging"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "charge_points",
        sa.Column("charge_point_id", sa.String(48), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("ocpp_version", sa.String(16), nullable=True),
        sa.Column("vendor", sa.String(50), nullable=True),
        sa.Column("model", sa.String(50), nullable=True),
        sa.Column("firmware_version", sa.String(50), nullable=True),
        sa.Column("serial_number", sa.String(50), nullable=True),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.Column("last_seen", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("charge_point_id", name="pk_charge_points"),
    )
    op.create_table(
        "connectors",
        sa.Column("charge_point_id", sa.String(48), nullable=False),
        sa.Column("evse_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("connector_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error_code", sa.String(50), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.charge_point_id"],
            name="fk_connectors_charge_point_id_charge_points",
        ),
        sa.PrimaryKeyConstraint("charge_point_id", "evse_id", "connector_id", name="pk_connectors"),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("charge_point_id", sa.String(48), nullable=False),
        sa.Column("transaction_ref", sa.String(64), nullable=False),
        sa.Column("id_token", sa.String(255), nullable=True),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("remote_start_id", sa.Integer(), nullable=True),
        sa.Column("meter_start_wh", Energy(), nullable=True),
        sa.Column("meter_stop_wh", Energy(), nullable=True),
        sa.Column("energy_wh", Energy(), nullable=False),
        sa.Column("last_register_wh", Energy(), nullable=True),
        sa.Column("last_reading_at", UtcDateTime(), nullable=True),
        sa.Column("last_seq_no", sa.Integer(), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("stopped_at", UtcDateTime(), nullable=True),
        sa.Column("stop_reason", sa.String(64), nullable=True),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.charge_point_id"],
            name="fk_transactions_charge_point_id_charge_points",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_transactions"),
        sa.UniqueConstraint(
            "charge_point_id", "transaction_ref", name="uq_transactions_charge_point_id"
        ),
    )
    op.create_table(
        "meter_samples",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("charge_point_id", sa.String(48), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", UtcDateTime(), nullable=False),
        sa.Column("measurand", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(8), nullable=True),
        sa.Column("context", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("value", sa.Numeric(20, 3), nullable=True),
        sa.Column("raw", sa.String(100), nullable=True),
        sa.Column("seq_no", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name="fk_meter_samples_transaction_id_transactions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_meter_samples"),
    )
    op.create_index("ix_meter_samples_charge_point_id", "meter_samples", ["charge_point_id"])
    op.create_index("ix_meter_samples_transaction_id", "meter_samples", ["transaction_id"])
    op.create_table(
        "anomalies",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("charge_point_id", sa.String(48), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("timestamp", UtcDateTime(), nullable=True),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name="fk_anomalies_transaction_id_transactions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_anomalies"),
    )
    op.create_index("ix_anomalies_charge_point_id", "anomalies", ["charge_point_id"])
    op.create_index("ix_anomalies_transaction_id", "anomalies", ["transaction_id"])
    op.create_table(
        "ocpp_messages",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("charge_point_id", sa.String(48), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("message_type", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ocpp_messages"),
    )
    op.create_index("ix_ocpp_messages_charge_point_id", "ocpp_messages", ["charge_point_id"])


def downgrade() -> None:
    op.drop_table("ocpp_messages")
    op.drop_table("anomalies")
    op.drop_table("meter_samples")
    op.drop_table("transactions")
    op.drop_table("connectors")
    op.drop_table("charge_points")
