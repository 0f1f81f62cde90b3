"""One way for every contract to read and write itself: a codec over frozen dataclasses.

A contract is a frozen dataclass that inherits :class:`Contract`. Its field types drive reading:

- ``str``, ``int``, ``float``, ``bool``: checked (a JSON ``true`` is not a number; an integer is
  a fine ``float``); an ``Enum``: its value, refused with the known ones otherwise;
- ``X | None``: ``null`` or missing reads as the field's default (``None`` unless set);
- ``tuple[X, ...]``: a JSON list of ``X``; ``dict[str, X]``: an object of ``X`` (``Any``: anything);
- another contract: a nested object.

A missing field takes its default; without one it is an error. Unknown keys are ignored, so an
older reader takes a newer writer's message. Rules across fields go in :meth:`Contract.check`.
Every error is a :class:`~agent.contracts.errors.ContractError` that names the message and the
field, e.g. ``desired.models[0].sha256: not a lowercase hex sha256``.

Writing is the reverse: tuples become lists, enums their values, nested contracts objects; a
message with a ``SCHEMA`` carries it as its first key. With ``OMIT_DEFAULTS`` a contract writes
only the fields that differ from their defaults (the policies, whose empty form is ``{}``).

Field metadata ``{"missing": value}`` gives the value a *missing* field reads as, when it is not
the constructor's default (a report's ``ts`` defaults to now when built, to 0 when read).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from typing import Any, ClassVar, Self, TypeVar, Union

from agent.contracts._fields import check as check_type
from agent.contracts._fields import obj, schema
from agent.contracts.errors import ContractError

C = TypeVar("C", bound="Contract")
_NO_DEFAULT = object()


class Contract:
    """Mixin for a frozen dataclass that is a wire contract (or a part of one).

    ``WHERE`` names the message in errors (``"desired"``); ``SCHEMA`` is the ``schema`` value a
    top-level message must carry (``None`` for parts of a message).
    """

    WHERE: ClassVar[str] = ""
    SCHEMA: ClassVar[str | None] = None
    OMIT_DEFAULTS: ClassVar[bool] = False

    def check(self, where: str) -> None:
        """Rules across fields, run after reading; raise :class:`ContractError` naming ``where``."""

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> Self:
        """Read the contract from parsed JSON. Raises :class:`ContractError` naming the field."""
        return decode(cls, data, where or cls.WHERE or cls.__name__)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for this contract (plain dicts, lists and scalars)."""
        return encode_fields(self)

    @classmethod
    def from_json(cls, payload: bytes | str) -> Self:
        """Parse a JSON payload. Raises :class:`ContractError` for bad JSON or a bad field."""
        where = cls.WHERE or cls.__name__
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError(f"{where}: payload is not JSON: {exc}") from exc
        return cls.from_dict(data, where)

    def to_json(self) -> bytes:
        """The compact JSON payload (keys sorted, so equal messages are equal bytes)."""
        return json.dumps(self.to_dict(), sort_keys=True).encode()


def decode(cls: type[C], data: Any, where: str) -> C:
    """Build ``cls`` from ``data`` (see the module docstring). Raises :class:`ContractError`."""
    d = obj(data, where)
    if cls.SCHEMA is not None:
        schema(d, cls.SCHEMA, where)
    values = {}
    for f, tp in _fields(cls):
        raw = d.get(f.name)
        if raw is None:
            missing = f.metadata.get("missing", _NO_DEFAULT)
            if missing is not _NO_DEFAULT:
                values[f.name] = missing
                continue
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue  # the constructor fills the default in
            if f.name not in d:
                raise ContractError(f"{where}: missing field {f.name!r}")
            if not _optional(tp):
                raise ContractError(f"{where}.{f.name}: expected {_name(tp)}, got null")
            values[f.name] = None
            continue
        values[f.name] = _value(tp, raw, f"{where}.{f.name}")
    out = cls(**values)
    out.check(where)
    return out


def encode_fields(contract: Contract) -> dict[str, Any]:
    """The JSON object of a contract's fields (what :meth:`Contract.to_dict` returns unless a
    contract adds derived keys)."""
    out: dict[str, Any] = {} if contract.SCHEMA is None else {"schema": contract.SCHEMA}
    for f, _tp in _fields(type(contract)):
        v = getattr(contract, f.name)
        if contract.OMIT_DEFAULTS and f.default is not dataclasses.MISSING and v == f.default:
            continue
        out[f.name] = encode(v)
    return out


def encode(value: Any) -> Any:
    """The JSON form of a value inside a contract (a nested contract through its ``to_dict``)."""
    if isinstance(value, Contract):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


_FIELDS: dict[type, tuple[tuple[dataclasses.Field[Any], Any], ...]] = {}


def _fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    """Each init field with its resolved type (the annotations are strings until resolved)."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _FIELDS[cls] = tuple((f, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
    return found


def _optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _name(tp: Any) -> str:
    if _is_union(tp):
        return " or ".join(_name(a) for a in typing.get_args(tp) if a is not type(None))
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "list"
    if origin is dict or tp is dict:
        return "object"
    return getattr(tp, "__name__", str(tp))


def _value(tp: Any, raw: Any, where: str) -> Any:
    if tp is Any:
        return raw
    if _is_union(tp):
        choices = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(choices) != 1:
            raise TypeError(f"{where}: a contract field may be one type or None, not {tp}")
        return _value(choices[0], raw, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        element = typing.get_args(tp)[0]
        items = check_type(raw, list, where)
        return tuple(_value(element, x, f"{where}[{i}]") for i, x in enumerate(items))
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        value_type = args[1] if args else Any
        return {k: _value(value_type, v, f"{where}.{k}") for k, v in check_type(raw, dict, where).items()}
    if isinstance(tp, type) and issubclass(tp, Contract):
        return decode(tp, raw, where)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(check_type(raw, str, where))
        except ValueError:
            known = ", ".join(str(m.value) for m in tp)
            raise ContractError(f"{where}: unknown value {raw!r} (known: {known})") from None
    if tp in (str, int, float, bool):
        return check_type(raw, tp, where)
    raise TypeError(f"{where}: the contract codec can't read a field of type {tp}")
