"""Small typed readers for JSON objects, so every contract fails the same way on bad input."""

from __future__ import annotations

from typing import Any, TypeVar

from agent.contracts.errors import ContractError

T = TypeVar("T")


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def req(data: dict[str, Any], key: str, typ: type[T] | tuple[type, ...], where: str) -> T:
    if key not in data:
        raise ContractError(f"{where}: missing field {key!r}")
    return check(data[key], typ, f"{where}.{key}")


def opt(
    data: dict[str, Any], key: str, typ: type[T] | tuple[type, ...], where: str, default: Any = None
) -> Any:
    if data.get(key) is None:
        return default
    return check(data[key], typ, f"{where}.{key}")


def check(value: Any, typ: type[T] | tuple[type, ...], where: str) -> T:
    # bool is an int in Python; a JSON true must not pass for a number.
    if isinstance(value, bool) and typ in (int, float, (int, float)):
        raise ContractError(f"{where}: expected a number, got a boolean")
    if typ is float and isinstance(value, int):
        return float(value)  # type: ignore[return-value]
    if not isinstance(value, typ):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise ContractError(f"{where}: expected {name}, got {type(value).__name__}")
    return value  # type: ignore[return-value]


def schema(data: dict[str, Any], expected: str, where: str) -> None:
    got = data.get("schema")
    if got != expected:
        raise ContractError(f"{where}: schema is {got!r}, this reader understands {expected!r}")
