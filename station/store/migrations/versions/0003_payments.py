"""Payments: negotiations, offers, challenges, sessions, settlements.

Revision ID: 0003_payments
Revises: 0002_trust
"""

revision = "0003_payments"
down_revision = "0002_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
