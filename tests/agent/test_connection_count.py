"""The MQTT connection count behind Status.connection: it only grows, across restarts too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.connection_count import ConnectionCounter
from agent.contracts.state import Status


def test_the_count_grows_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "mqtt-connections"
    first = ConnectionCounter(path)
    assert [first.next(), first.next()] == [1, 2]
    again = ConnectionCounter(path)  # the agent restarted
    assert again.next() == 3
    assert path.read_text() == "3" and not path.with_name(path.name + ".tmp").exists()


def test_a_file_that_is_not_a_number_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "mqtt-connections"
    path.write_text("garbage")
    assert ConnectionCounter(path).next() == 1


def test_status_ordering_is_by_connection_number() -> None:
    online5 = Status("d", online=True, connection=5)
    assert Status.from_json(online5.to_json()) == online5
    assert Status("d", online=False, connection=4).supersedes(5) is False
    assert Status("d", online=False, connection=5).supersedes(5) is True
    assert Status("d", online=False).supersedes(5) is True  # an agent that does not number them
    assert online5.supersedes(None) is True


def test_each_store_syncs_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ConnectionCounter(tmp_path / "mqtt-connections").next()
    assert synced[-1] == tmp_path.resolve()  # the rename is durable, not only the content
