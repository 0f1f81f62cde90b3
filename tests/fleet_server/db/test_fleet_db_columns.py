"""Desired and reported states are stored as JSON and read back as their contract types; a stored
value that no longer parses reads as none instead of breaking the read."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from agent.contracts import DesiredModel, DesiredState, ReportedError, ReportedState, UpdateState
from fleet_server.db import Base, Device, make_engine, make_sessions


def test_contract_columns_round_trip_and_tolerate_bad_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    Base.metadata.create_all(engine)
    sessions = make_sessions(engine)
    model = DesiredModel("digits", "1.0", "onnx-x86", "int8", "p.tar", "/artifacts/p.tar", 10, "a" * 64)
    desired = DesiredState("d1", 3, (model,), deployment_id="7", issued_at=5.0)
    err = ReportedError("HASH_MISMATCH", "sha256 differs")
    reported = ReportedState("d1", 3, UpdateState.IDLE, error=err, ts=6.0, seq=4)
    with sessions.begin() as s:
        s.add(
            Device(
                device_id="d1", profile="p", target="onnx-x86", desired=desired, reported=reported, error=err
            )
        )
    with sessions() as s:
        dev = s.get(Device, "d1")
        assert dev is not None
        assert dev.desired == desired and dev.reported == reported and dev.error == err
        stored = s.execute(text("SELECT desired FROM devices")).scalar_one()
        assert '"generation": 3' in stored  # JSON in the column, as on the wire
    with sessions.begin() as s:
        s.execute(text("""UPDATE devices SET desired = '{"schema": "edgefleet.desired/0"}'"""))
    with sessions() as s:
        dev = s.get(Device, "d1")
        assert dev is not None and dev.desired is None and dev.reported == reported
    engine.dispose()


def test_group_policies_round_trip_and_a_bad_one_reads_as_the_defaults(tmp_path: Path) -> None:
    from agent.contracts.policy import ServingPolicy
    from fleet_server.db import Group
    from fleet_server.groups import policy
    from fleet_server.rollout import GroupOffload, GroupPolicy

    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    Base.metadata.create_all(engine)
    sessions = make_sessions(engine)
    serving, offload = ServingPolicy(latency_budget_ms=50), GroupOffload(True, budget=0.3)
    with sessions.begin() as s:
        s.add(Group(name="lab", serving=serving, offload=offload))
        s.add(Group(name="plain"))
    with sessions() as s:
        assert policy(s.get_one(Group, "lab")) == GroupPolicy(serving, offload)
        assert policy(s.get_one(Group, "plain")) == GroupPolicy()
        stored = s.execute(text("SELECT offload FROM groups WHERE name = 'lab'")).scalar_one()
        assert stored == '{"enabled": true, "budget": 0.3}'
    with sessions.begin() as s:
        s.execute(text("""UPDATE groups SET offload = '{"budget": 7}' WHERE name = 'lab'"""))
    with sessions() as s:
        assert policy(s.get_one(Group, "lab")) == GroupPolicy(serving, GroupOffload())
    engine.dispose()
