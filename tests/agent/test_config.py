"""Settings: flags over environment over config file; clear errors; the CLI's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.errors import ConfigError

BASE = {
    "server": "http://fleet:8080",
    "device_id": "dev-1",
    "profile": "x86-64-avx2",
    "data_dir": "/var/lib/ef",
}


def test_defaults(tmp_path: Path) -> None:
    c = load_config(BASE, {})
    assert (c.host, c.port, c.threads, c.log_level, c.labels) == ("127.0.0.1", 0, None, "INFO", {})
    assert c.data_dir == Path("/var/lib/ef") and c.server == "http://fleet:8080"


def test_precedence_flag_env_file(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "server: http://from-file:1\ndevice_id: file-dev\nprofile: raspberry-pi-5\ndata_dir: /file\n"
        "port: 9000\nthreads: 2\nlabels: {site: file, rack: '7'}\n"
    )
    env = {
        "EDGEFLEET_AGENT_DEVICE_ID": "env-dev",
        "EDGEFLEET_AGENT_PORT": "9100",
        "EDGEFLEET_AGENT_LABELS": "site=env,zone=b",
    }
    c = load_config({"device_id": "flag-dev", "labels": {"zone": "flag"}}, env, cfg)
    assert c.server == "http://from-file:1" and c.profile == "raspberry-pi-5" and c.threads == 2
    assert c.device_id == "flag-dev"  # flag beats env beats file
    assert c.port == 9100  # env beats file
    assert c.labels == {"site": "env", "rack": "7", "zone": "flag"}  # merged key by key


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    cfg.write_text("server: http://x:1\ndevice_id: d\nprofile: x86-64-avx2\ndata_dir: /d\n")
    assert load_config({}, {"EDGEFLEET_AGENT_CONFIG": str(cfg)}).device_id == "d"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"device_id": "a/b"}, "device-id (command line): device id 'a/b' is not valid"),
        ({"server": "fleet:8080"}, "server (command line): 'fleet:8080' is not an http(s) URL"),
        ({"port": "http"}, "port (command line): expected an integer"),
        ({"port": 70000}, "70000 is not a TCP port"),
        ({"threads": 0}, "threads (command line): must be at least 1"),
        ({"log_level": "LOUD"}, "'LOUD' is not one of DEBUG"),
    ],
)
def test_bad_values_name_the_setting_and_its_source(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(BASE | change, {})


def test_missing_settings_are_listed_with_their_env_names() -> None:
    with pytest.raises(ConfigError, match=r"--device-id \(or EDGEFLEET_AGENT_DEVICE_ID\)"):
        load_config({"server": "http://x:1", "profile": "p", "data_dir": "/d"}, {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devcie_id: x\n", "devcie_id: unknown setting"),
        ("- a\n", "must be a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_config_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(BASE, {}, cfg)
    assert str(cfg) in str(exc.value)


def test_bad_labels() -> None:
    with pytest.raises(ConfigError, match="EDGEFLEET_AGENT_LABELS: label 'nokey' is not key=value"):
        load_config(BASE, {"EDGEFLEET_AGENT_LABELS": "nokey"})


def test_cli_unknown_profile_lists_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--server", "http://x:1", "--device-id", "d", "--profile", "nope", "--data-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("edge-agent: error: unknown profile 'nope'")
    assert "raspberry-pi-5" in err and "x86-64-avx2" in err


def test_cli_bad_label_and_missing_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("SERVER", "CONFIG"):
        monkeypatch.delenv(f"EDGEFLEET_AGENT_{key}", raising=False)
    assert main(["--device-id", "d", "--profile", "x86-64-avx2", "--data-dir", str(tmp_path)]) == 2
    assert "missing setting: --server" in capsys.readouterr().err
    args = [
        "--server",
        "http://x:1",
        "--device-id",
        "d",
        "--profile",
        "x86-64-avx2",
        "--data-dir",
        str(tmp_path),
    ]
    assert main([*args, "--label", "oops"]) == 2
    assert "--label: label 'oops' is not key=value" in capsys.readouterr().err


def test_cli_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--device-id" in out and "EDGEFLEET_AGENT_" in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "edge-agent 0.1.0" in capsys.readouterr().out


ROOT = Path(__file__).resolve().parents[2]


def test_the_example_config_is_valid() -> None:
    c = load_config({}, {}, ROOT / "deploy" / "agent.example.yaml")
    assert c.profile == "x86-64-avx2" and c.labels["site"] == "warehouse-3"


def test_the_systemd_unit_runs_the_cli_with_flags_it_knows() -> None:
    import shlex

    from agent.cli import build_parser

    unit = (ROOT / "deploy" / "edge-agent.service").read_text()
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("${STATE_DIRECTORY}", "/var/lib/x"))
    assert argv[0].endswith("/edge-agent")
    args = build_parser().parse_args(argv[1:])
    assert args.config == Path("/etc/edgefleet/agent.yaml") and args.data_dir == "/var/lib/x"
    assert "RestartPreventExitStatus=2" in unit  # bad settings: the CLI's exit code 2


def test_every_setting_has_a_flag_named_after_it() -> None:
    from agent.cli import build_parser
    from agent.config import AgentConfig

    flags = {a.dest: a.option_strings for a in build_parser()._actions}
    for name in AgentConfig.model_fields:
        expected = "--label" if name == "labels" else f"--{name.replace('_', '-')}"
        assert flags[name] == [expected]
        assert AgentConfig.model_fields[name].description  # the flag's help
