"""Sessions remember when their stop was first asked for.

The station owns a stopping session's next step until it is terminal: the
stop is sent again on every reconnect and reconciler pass, and a charge
point that ignores it past ``session_stop_timeout_s`` (counted from
``stop_requested_at``) has its session ended by the station. Rows from
before this revision have no time: their deadline counts from the next pass.

Revision ID: 0006_stop_requested_at
Revises: 0005_token_verdict
"""

import sqlalchemy as sa
from alembic import op

from station.store.base import UtcDateTime

revision = "0006_stop_requested_at"
down_revision = "0005_token_verdict"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("stop_requested_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("stop_requested_at")
