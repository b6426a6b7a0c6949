"""Charge points may keep a keyed password verifier beside their scrypt hash.

``password_verifier`` is ``hmac-sha256$<key id>$<digest>``, an HMAC under a
key derived from the station's secret key (never stored), tied to the scrypt
hash (station.ocpp.auth.KeyedVerifier). It lets a restarted station admit a
fleet without a scrypt check each. Rows from before this revision have none:
each gets one on its next successful scrypt check.

Revision ID: 0011_password_verifier
Revises: 0007_charge_point_removed_at
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_password_verifier"
down_revision = "0007_charge_point_removed_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charge_points") as batch:
        batch.add_column(sa.Column("password_verifier", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charge_points") as batch:
        batch.drop_column("password_verifier")
