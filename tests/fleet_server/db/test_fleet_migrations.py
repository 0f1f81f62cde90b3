"""Alembic migrations on SQLite and PostgreSQL: they create exactly the ORM schema, are idempotent,
run from ``fleet-server db upgrade``, and the whole server works on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from fleet_server.cli import app as cli_app
from fleet_server.db import (
    AuditEntry,
    Base,
    Device,
    current_revision,
    make_engine,
    make_sessions,
    upgrade,
)
from fleet_server.db.migrate import MIGRATIONS, alembic_config
from tests.fixtures.enroll import enroll

TABLES = {
    "model_versions",
    "bundles",
    "devices",
    "groups",
    "group_members",
    "deployments",
    "deployment_devices",
    "operator_tokens",
    "audit_log",
}


def head() -> str:
    return str(ScriptDirectory(str(MIGRATIONS)).get_current_head())


def check_schema(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)  # idempotent
    assert current_revision(engine) == head()
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"migrations and models disagree: {diff}"
    sessions = make_sessions(engine)
    with sessions.begin() as s:
        s.add(Device(device_id="d1", profile="x86-64-avx2", target="onnx-x86", labels={"a": "b"}, facts={}))
    with sessions() as s:
        d = s.get(Device, "d1")
        assert d is not None and d.labels == {"a": "b"} and d.desired is None and d.desired_generation == 0
    with sessions.begin() as s:
        s.add(AuditEntry(actor="a", method="POST", path="/api/v1/groups", action="groups.create", status=201))
    for sql in ("UPDATE audit_log SET status = 200", "DELETE FROM audit_log"):
        with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(sql))  # the database's own trigger, below the ORM's guard
    with sessions() as s:
        assert [e.status for e in s.query(AuditEntry)] == [201]


def test_migrations_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'fleet.db'}")
    try:
        check_schema(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_migrations_postgresql(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        assert engine.dialect.name == "postgresql"
        check_schema(engine)
    finally:
        engine.dispose()


def test_alembic_config_is_built_in_code(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    cfg = alembic_config(engine)
    assert cfg.get_main_option("script_location") == str(MIGRATIONS)
    assert (MIGRATIONS / "versions").is_dir()
    engine.dispose()


def test_db_upgrade_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"event": "db_upgraded", "revision": head()}
    assert (tmp_path / "fleet.db").is_file()


@pytest.mark.postgres
def test_server_runs_on_postgresql(postgres_url: str, settings: Any, start_app: Any) -> None:
    c = start_app(settings.model_copy(update={"db": postgres_url}))
    assert (
        enroll(
            c,
            {"device_id": "d1", "profile": "x86-64-avx2", "labels": {"s": "x"}},
        ).status_code
        == 200
    )
    assert c.post("/api/v1/groups", json={"name": "g", "selector": {"s": "x"}}).status_code == 201
    assert c.get("/api/v1/groups/g").json()["members"] == ["d1"]
    assert c.get("/api/v1/devices/d1").json()["labels"] == {"s": "x"}
