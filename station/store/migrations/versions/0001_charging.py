"""Charging: charge points, connectors, transactions, meter samples, anomalies.

Revision ID: 0001_charging
Revises:
"""

revision = "0001_charging"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
