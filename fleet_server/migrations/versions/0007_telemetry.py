"""Telemetry: raw windows (kept for the raw retention), one-minute rollups per device and model
(kept for the rollup retention), and the rollup job's watermark.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _row_id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "telemetry",
        sa.Column("id", _row_id(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("throughput_rps", sa.Float(), nullable=True),
        sa.Column("p50_ms", sa.Float(), nullable=True),
        sa.Column("p95_ms", sa.Float(), nullable=True),
        sa.Column("p99_ms", sa.Float(), nullable=True),
        sa.Column("queue_depth", sa.BigInteger(), nullable=True),
        sa.Column("offload_ratio", sa.Float(), nullable=True),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_mb", sa.Float(), nullable=True),
        sa.Column("temperature_c", sa.Float(), nullable=True),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("classes", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("outputs", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "seq", "ts", name="uq_telemetry_device_seq_ts"),
    )
    op.create_index("ix_telemetry_model_ts", "telemetry", ["model", "ts"], unique=False)
    op.create_index("ix_telemetry_device_ts", "telemetry", ["device_id", "ts"], unique=False)
    op.create_index("ix_telemetry_ts", "telemetry", ["ts"], unique=False)
    op.create_table(
        "telemetry_rollups",
        sa.Column("id", _row_id(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("windows", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_weight", sa.BigInteger(), nullable=False),
        sa.Column("p50_sum", sa.Float(), nullable=False),
        sa.Column("p95_sum", sa.Float(), nullable=False),
        sa.Column("p99_sum", sa.Float(), nullable=False),
        sa.Column("p95_max", sa.Float(), nullable=True),
        sa.Column("offload_weight", sa.BigInteger(), nullable=False),
        sa.Column("offload_sum", sa.Float(), nullable=False),
        sa.Column("cpu_sum", sa.Float(), nullable=False),
        sa.Column("cpu_n", sa.Integer(), nullable=False),
        sa.Column("memory_max", sa.Float(), nullable=True),
        sa.Column("temperature_max", sa.Float(), nullable=True),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("classes", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("outputs", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "model", "bucket", name="uq_telemetry_rollups_key"),
    )
    op.create_index(
        "ix_telemetry_rollups_model_bucket", "telemetry_rollups", ["model", "bucket"], unique=False
    )
    op.create_index("ix_telemetry_rollups_bucket", "telemetry_rollups", ["bucket"], unique=False)
    op.create_table(
        "telemetry_rollup_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("telemetry_rollup_state")
    op.drop_index("ix_telemetry_rollups_bucket", table_name="telemetry_rollups")
    op.drop_index("ix_telemetry_rollups_model_bucket", table_name="telemetry_rollups")
    op.drop_table("telemetry_rollups")
    op.drop_index("ix_telemetry_ts", table_name="telemetry")
    op.drop_index("ix_telemetry_device_ts", table_name="telemetry")
    op.drop_index("ix_telemetry_model_ts", table_name="telemetry")
    op.drop_table("telemetry")
