"""A full disk and a read-only data directory during an update, on a real filesystem of their
own (a small tmpfs mounted for the test; remounted read-only): the update ends with a typed error
in the reported state and the old model keeps serving; once there is room again, or the
directory is writable again, the next update goes through."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.contracts.topics import device_topic
from tests.agent.agent_testkit import AgentProcess, ArtifactServer, BuiltBundle, Observer, desired_state
from tests.faults.faultkit import requests_for, serves_complete, wait_part, wait_terminal

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.e2e]
DEVICE = "edge-disk-1"
DESIRED = device_topic(DEVICE, "desired")


class Mount:
    """A tmpfs of its own at ``path`` (the agent's data directory)."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)

    def fill(self) -> Path:
        """Fill the filesystem up to the last byte; returns the filler file."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for block in (64 << 10, 512, 1):
                with contextlib.suppress(OSError):
                    while os.write(fd, b"\0" * block):
                        pass
        finally:
            os.close(fd)
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[[str], Mount]]:
    made: list[Mount] = []

    def make(size: str) -> Mount:
        made.append(Mount(tmp_path / "data", size))
        return made[-1]

    yield make
    for m in made:
        m.unmount()


def serving_v1(
    data: Path,
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    spawn: Callable[..., AgentProcess],
) -> AgentProcess:
    agent = spawn(data, fleet.url, DEVICE)
    agent.wait_ready()
    observer.publish(DESIRED, desired_state(DEVICE, 1, bundles["1"].model).to_json())
    assert wait_terminal(observer, 1)["state"] == "COMMITTED"
    return agent


def test_no_room_for_the_download_is_disk_full_and_the_old_model_serves(
    mount: Callable[[str], Mount],
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    slow_bundle: BuiltBundle,
    spawn: Callable[..., AgentProcess],
    fault_log: Callable[..., None],
) -> None:
    m = mount("2m")  # v1 fits; v3's 1.5 MB download plus its unpacked copy do not
    agent = serving_v1(m.path, fleet, observer, bundles, spawn)
    fleet.add(slow_bundle.model, slow_bundle.tar)
    observer.publish(DESIRED, desired_state(DEVICE, 2, slow_bundle.model).to_json())
    done = wait_terminal(observer, 2)
    assert done["state"] == "IDLE" and done["error"]["code"] == "DISK_FULL", done
    assert done["active"] == "linear:1"
    assert serves_complete(agent.url, bundles) == "1"
    assert not requests_for(fleet, slow_bundle.model)  # refused before a byte was fetched
    assert agent.terminate() == 0
    fault_log("disk", "no room before the download", error=done["error"]["code"], serving="1", recovered=True)


def test_disk_filling_up_mid_download_is_disk_full_and_the_next_update_succeeds(
    mount: Callable[[str], Mount],
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    slow_bundle: BuiltBundle,
    spawn: Callable[..., AgentProcess],
    fault_log: Callable[..., None],
) -> None:
    m = mount("8m")
    agent = serving_v1(m.path, fleet, observer, bundles, spawn)
    fleet.add(slow_bundle.model, slow_bundle.tar)
    fleet.behaviour.chunk, fleet.behaviour.throttle_s = 16 << 10, 0.02
    observer.publish(DESIRED, desired_state(DEVICE, 2, slow_bundle.model).to_json())
    wait_part(m.path, slow_bundle.model.sha256, slow_bundle.model.size // 3)
    filler = m.fill()  # something else on the device took all the room
    done = wait_terminal(observer, 2)
    assert done["state"] == "IDLE" and done["error"]["code"] == "DISK_FULL", done
    assert done["active"] == "linear:1"
    assert serves_complete(agent.url, bundles) == "1"

    filler.unlink()
    fleet.behaviour.throttle_s = 0.0
    observer.publish(DESIRED, desired_state(DEVICE, 3, slow_bundle.model).to_json())
    assert wait_terminal(observer, 3)["state"] == "COMMITTED"
    assert serves_complete(agent.url, {**bundles, "3": slow_bundle}) == "3"
    assert agent.terminate() == 0
    fault_log("disk", "filled up mid-download", error=done["error"]["code"], serving="1", recovered=True)


def test_a_read_only_data_directory_is_a_typed_error_and_the_old_model_serves(
    mount: Callable[[str], Mount],
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    spawn: Callable[..., AgentProcess],
    fault_log: Callable[..., None],
) -> None:
    m = mount("8m")
    agent = serving_v1(m.path, fleet, observer, bundles, spawn)
    m.remount("ro")  # the SD card went read-only (an ext4 error remount, a worn card)
    observer.publish(DESIRED, desired_state(DEVICE, 2, bundles["2"].model).to_json())
    done = wait_terminal(observer, 2, timeout=30)
    assert done["state"] == "IDLE" and done["error"]["code"] == "STORAGE_FAILED", done
    assert "read-only" in done["error"]["message"].lower()
    assert done["active"] == "linear:1"
    assert serves_complete(agent.url, bundles) == "1"

    m.remount("rw")
    observer.publish(DESIRED, desired_state(DEVICE, 3, bundles["2"].model).to_json())
    assert wait_terminal(observer, 3)["state"] == "COMMITTED"
    assert serves_complete(agent.url, bundles) == "2"
    assert agent.terminate() == 0
    fault_log("disk", "read-only data directory", error=done["error"]["code"], serving="1", recovered=True)
