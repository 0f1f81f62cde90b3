"""Device identity: enrollment tokens, issued certificates, a device's certificate and revocation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("group_name", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "device_certificates",
        sa.Column("serial", sa.String(40), primary_key=True),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_device_certificates_device_id", "device_certificates", ["device_id"])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("cert_serial", sa.String(40), nullable=True))
        batch.add_column(sa.Column("cert_not_after", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("cert_not_after")
        batch.drop_column("cert_serial")
    op.drop_index("ix_device_certificates_device_id", "device_certificates")
    op.drop_table("device_certificates")
    op.drop_table("enrollment_tokens")
