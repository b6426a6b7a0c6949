"""Sessions paid on MPP's ``charge`` intent, and their refunds.

A ``charge`` session is charged the cap at once; at settlement the unused
part is refunded, the refund's intent (a settlements row, action
``refund``) written before Stripe is called. ``sessions.payment_intent``
says which intent paid (rows from before are ``authorize``),
``sessions.refunded`` what went back, ``settlements.refund_reference`` the
Stripe refund once done. ``sessions.payer_method`` is an unregistered payer's
payment method (the key of its daily ceiling and of its kill switch).

Revision ID: 0008_charge_intent
Revises: 0010_cluster
"""

import sqlalchemy as sa
from alembic import op

from station.store.base import Amount

revision = "0008_charge_intent"
down_revision = "0010_cluster"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("payment_intent", sa.String(16), nullable=False, server_default="authorize")
        )
        batch.add_column(sa.Column("refunded", Amount(), nullable=True))
        batch.add_column(sa.Column("payer_method", sa.String(255), nullable=True))
        batch.create_index("ix_sessions_payer_method", ["payer_method"])
    with op.batch_alter_table("settlements") as batch:
        batch.add_column(sa.Column("refund_reference", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("settlements") as batch:
        batch.drop_column("refund_reference")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_index("ix_sessions_payer_method")
        batch.drop_column("payer_method")
        batch.drop_column("refunded")
        batch.drop_column("payment_intent")
