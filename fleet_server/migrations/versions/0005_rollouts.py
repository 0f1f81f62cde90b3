"""Staged rollouts: a deployment's rollout spec, wave, bake start, roll-back flag, per-wave
counts and gate figures; a deployment device's wave, timers, previous models and roll-back flag;
an index to find a device's rows by device id (one report costs O(1)).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("spec", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("wave", sa.Integer(), nullable=False, server_default="-1"))
        batch.add_column(sa.Column("waves", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("wave_ended_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("rollback", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("counts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("gate", sa.JSON(), nullable=True))
    with op.batch_alter_table("deployment_devices") as batch:
        batch.add_column(sa.Column("wave", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("notified_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("committed_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("previous", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rolled_back", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_deployment_devices_device_id", "deployment_devices", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_deployment_devices_device_id", table_name="deployment_devices")
    with op.batch_alter_table("deployment_devices") as batch:
        for name in ("rolled_back", "previous", "committed_at", "notified_at", "wave"):
            batch.drop_column(name)
    with op.batch_alter_table("deployments") as batch:
        for name in ("gate", "counts", "rollback", "wave_ended_at", "waves", "wave", "spec"):
            batch.drop_column(name)
