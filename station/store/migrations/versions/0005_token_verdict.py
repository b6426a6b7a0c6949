"""Transactions keep the station's verdict on their id token.

Until now a transaction reloaded from the database (after a reconnect or a
restart) was taken as accepted, so a charge point re-sending its start or
end got ``Accepted`` for a token the station had refused. ``id_token_accepted``
is the verdict given at the start; ``billed`` says whether a session claimed
the token (an unclaimed, free-vend transaction is never priced). Rows from
before this revision had been answered as accepted and billed: that is
their default.

Revision ID: 0005_token_verdict
Revises: 0004_hot_path_indexes
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_token_verdict"
down_revision = "0004_hot_path_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(
            sa.Column("id_token_accepted", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(
            sa.Column("billed", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("billed")
        batch.drop_column("id_token_accepted")
