"""Group serving and offload policies from the command line: `groups create` with policy options,
`groups set` as a merge patch, the policies in `groups ls` (table and JSON), and usage errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from typer.testing import Result

Run = Callable[..., Result]


def test_create_with_a_policy_then_set_changes_only_what_is_given(api: Run, fleet) -> None:
    created = api(
        "groups", "create", "cams", "-l", "kind=cam",
        "--latency-budget-ms", "50", "--max-batch", "4", "--offload-cloud", "--offload-share", "0.3",
        "-o", "json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    group = json.loads(created.stdout)
    assert group["serving"] == {"latency_budget_ms": 50.0, "max_batch_size": 4}
    assert group["offload"] == {"enabled": True, "budget": 0.3}  # no URL: the server's own cloud

    table = api("groups", "ls")
    assert table.exit_code == 0
    assert "budget 50 ms" in table.stdout and "this server's cloud (≤30%)" in table.stdout

    url = "http://triton.local:8000"
    changed = api("groups", "set", "cams", "--offload-url", url)
    assert changed.exit_code == 0, changed.output
    assert "updated group cams" in changed.stderr and url in changed.stdout
    assert ("PATCH", "/api/v1/groups/cams", None) in fleet.requests
    listed = json.loads(api("groups", "ls", "-o", "json").stdout)[0]
    assert listed["serving"] == {"latency_budget_ms": 50.0, "max_batch_size": 4}
    assert listed["offload"] == {"enabled": True, "endpoint_url": url, "budget": 0.3}

    assert api("groups", "set", "cams", "--no-offload").exit_code == 0
    assert fleet.groups["cams"]["offload"] == {"enabled": False, "endpoint_url": url, "budget": 0.3}
    shown = api("groups", "set", "cams", "--max-batch", "2").stdout
    assert re.search(r"serving\s+budget 50 ms, batch ≤2\s", shown) and re.search(r"offload\s+off\s", shown)


def test_a_group_without_policy_options_sends_none(api: Run, fleet) -> None:
    assert api("groups", "create", "lab").exit_code == 0
    assert set(fleet.groups["lab"]) == {"name", "devices", "selector"}


def test_policy_usage_errors_send_nothing(api: Run, fleet) -> None:
    both = api("groups", "create", "cams", "--offload-url", "http://x:1", "--offload-cloud")
    assert both.exit_code == 2 and "--offload-url: can't go with --offload-cloud" in both.stderr
    assert fleet.groups == {}
    api("groups", "create", "cams")
    nothing = api("groups", "set", "cams")
    assert nothing.exit_code == 2 and "give at least one policy option" in nothing.stderr
    assert not [r for r in fleet.requests if r[0] == "PATCH"]
    unknown = api("groups", "set", "nope", "--max-batch", "2")
    assert unknown.exit_code == 1 and "unknown group 'nope' (HTTP 404, not_found)" in unknown.stderr
