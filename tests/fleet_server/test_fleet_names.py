"""Names users choose and artifact keys: checked whole, so a trailing newline (which ``$`` lets
through) never reaches a store key, a URL or a topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleet_server.errors import InvalidRequestError
from fleet_server.names import check_name, parse_model_ref
from fleet_server.store import DirStore, check_key

DIGITS_ONNX = Path(__file__).resolve().parents[2] / "examples" / "digits" / "digits_cnn.onnx"


@pytest.mark.parametrize("bad", ["digits\n", "digits\r\n", "\ndigits", "di\ngits", "", "-x", "a" * 129])
def test_check_name_refuses_newlines_and_malformed_names(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="is not valid"):
        check_name(bad, "model name")


def test_check_name_accepts_the_documented_alphabet() -> None:
    for good in ("digits", "1.0", "v2_rc+build.7", "A-b", "a" * 128):
        assert check_name(good, "model name") == good


def test_model_refs_with_a_trailing_newline_are_refused() -> None:
    assert parse_model_ref("digits:1.0") == ("digits", "1.0")
    for bad in ("digits:1.0\n", "digits\n:1.0"):
        with pytest.raises(InvalidRequestError):
            parse_model_ref(bad)


@pytest.mark.parametrize("bad", ["digits/1.0/x.tar\n", "digits/1.0\n/x.tar", "digits\n/1.0/x.tar", "a/b\r\n"])
def test_check_key_refuses_a_trailing_newline_in_any_part(bad: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="not a valid artifact key"):
        check_key(bad)
    with pytest.raises(InvalidRequestError):
        DirStore(tmp_path / "artifacts").exists(bad)  # every store checks its keys this way
    assert check_key("digits/1.0/onnx-x86-int8-1a2b3c4d.tar") == "digits/1.0/onnx-x86-int8-1a2b3c4d.tar"


def test_pushing_a_model_named_with_a_trailing_newline_is_a_400(settings: Any, start_app: Any) -> None:
    c = start_app(settings)
    for name, version in (("digits\n", "1.0"), ("digits", "1.0\n")):
        r = c.post(
            "/api/v1/models",
            data={"name": name, "version": version},
            files={"file": ("model.onnx", DIGITS_ONNX.read_bytes())},
        )
        assert r.status_code == 400, (name, version, r.text)
    assert c.get("/api/v1/models").json() == []
