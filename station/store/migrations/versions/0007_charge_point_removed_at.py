"""Charge points can be removed (soft): ``removed_at``.

A removed charge point keeps its row and history but can no longer connect
(its handshake gets the same 401 as an unknown id) and is left out of the
operator's lists unless asked for. Registering the id again clears it.

Revision ID: 0007_charge_point_removed_at
Revises: 0006_stop_requested_at
"""

import sqlalchemy as sa
from alembic import op

from station.store.base import UtcDateTime

revision = "0007_charge_point_removed_at"
down_revision = "0006_stop_requested_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charge_points") as batch:
        batch.add_column(sa.Column("removed_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charge_points") as batch:
        batch.drop_column("removed_at")
