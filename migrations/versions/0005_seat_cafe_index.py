"""seat: drop the index of cafe_id alone (the unique index on cafe_id, round, participant_id leads with it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('seat', schema=None) as batch_op:
        batch_op.drop_index('ix_seat_cafe_id')


def downgrade():
    with op.batch_alter_table('seat', schema=None) as batch_op:
        batch_op.create_index('ix_seat_cafe_id', ['cafe_id'], unique=False)
