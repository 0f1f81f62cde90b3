"""Alembic environment: runs on the engine handed over in ``config.attributes["engine"]`` (see
:mod:`fleet_server.db.migrate`), or on ``sqlalchemy.url`` when run from the ``alembic`` CLI."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from fleet_server.db.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///fleet.db")

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER most things
        compare_type=True,
    )
    context.run_migrations()
