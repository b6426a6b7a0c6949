"""The frame log and meter samples lose their charge point indexes.

Both tables are written for every OCPP message. An index on
``charge_point_id`` puts each charge point's new entries on a page of its
own, so every group commit rewrote one index page per charge point in the
batch: about two thirds of what a batch wrote to the WAL. Nothing in the
station reads either table by charge point (samples are read by
transaction, which keeps its index); an operator searching the frame log
by charge point scans it from the newest row back.

Revision ID: 0004_hot_path_indexes
Revises: 0003_payments
"""

from alembic import op

revision = "0004_hot_path_indexes"
down_revision = "0003_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ocpp_messages_charge_point_id", table_name="ocpp_messages")
    op.drop_index("ix_meter_samples_charge_point_id", table_name="meter_samples")


def downgrade() -> None:
    op.create_index("ix_meter_samples_charge_point_id", "meter_samples", ["charge_point_id"])
    op.create_index("ix_ocpp_messages_charge_point_id", "ocpp_messages", ["charge_point_id"])
