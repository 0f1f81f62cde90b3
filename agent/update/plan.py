"""What to do with a desired state, decided without I/O.

The reconciler gathers the facts (device id, the profile's target and runtime, which runtimes can
run here, the journal) and asks :func:`decide`; it then posts the matching event to the state machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from agent.contracts.state import DEFAULT_MODEL_KEY, DesiredModel, DesiredState, ErrorCode
from agent.update.journal import Journal


class Action(StrEnum):
    IGNORE = "IGNORE"  # nothing to do and nothing new to report
    UPDATE = "UPDATE"  # download and install ``model``
    ALREADY_ACTIVE = "ALREADY_ACTIVE"  # ``model`` is already serving: just record the generation
    UNLOAD = "UNLOAD"  # no model wanted: stop serving
    REFUSE = "REFUSE"  # can't take it here: report ``code`` and remember the generation


@dataclass(frozen=True)
class Plan:
    action: Action
    reason: str
    model: DesiredModel | None = None
    code: ErrorCode | None = None


def decide(
    desired: DesiredState,
    *,
    device_id: str,
    target: str,
    runtime: str,
    runtime_problems: Mapping[str, str | None],
    journal: Journal,
    model_keys: tuple[str, ...] = (DEFAULT_MODEL_KEY,),
) -> Plan:
    """Decide what ``desired`` asks of this device.

    ``target`` and ``runtime`` are the device profile's (the profile loader checked that the
    runtime runs the target, built-in or plug-in). ``runtime_problems`` maps a runtime name to
    ``None`` when it can run here, else to why not.
    ``model_keys`` are the model keys this agent serves (one, ``default``, for now).
    """
    gen = desired.generation
    if desired.device_id != device_id:
        return Plan(Action.IGNORE, f"desired state is for device {desired.device_id!r}, not {device_id!r}")
    if gen < journal.generation:
        return Plan(Action.IGNORE, f"generation {gen} is older than {journal.generation}")
    if gen == journal.applied_generation and gen > 0:
        return Plan(Action.IGNORE, f"generation {gen} is already applied")
    if gen in journal.failed_generations:
        return Plan(Action.IGNORE, f"generation {gen} failed before; waiting for a new one")

    unknown = [m.key for m in desired.models if m.key not in model_keys]
    if unknown:
        return Plan(
            Action.REFUSE,
            f"model key {unknown[0]!r} is not served here (keys: {', '.join(model_keys)})",
            code=ErrorCode.INCOMPATIBLE,
        )
    if not desired.models:
        return Plan(Action.UNLOAD, "the desired state has no model")
    model = desired.models[0]
    if model.target != target:
        return Plan(
            Action.REFUSE,
            f"{model.ref} is built for {model.target}; this device runs {target}",
            model=model,
            code=ErrorCode.INCOMPATIBLE,
        )
    problem = runtime_problems.get(runtime, f"runtime {runtime!r} is unknown")
    if problem is not None:
        return Plan(
            Action.REFUSE,
            f"{model.ref} needs runtime {runtime}: {problem}",
            model=model,
            code=ErrorCode.RUNTIME_UNAVAILABLE,
        )
    if journal.active is not None and journal.active.sha256 == model.sha256:
        return Plan(Action.ALREADY_ACTIVE, f"{model.ref} is already serving", model=model)
    return Plan(Action.UPDATE, f"install {model.ref}", model=model)
