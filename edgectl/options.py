"""Options shared by several commands, declared once so they read the same everywhere."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


OUTPUT_HELP = "table for people, json for scripts (JSON alone on stdout)."

Output = Annotated[
    OutputFormat | None,
    typer.Option("--output", "-o", help=OUTPUT_HELP + " Defaults to the global -o.", show_default=False),
]

ProfilesDir = Annotated[
    list[Path] | None,
    typer.Option(
        "--profiles-dir",
        help="A directory of your own profile YAML files (repeatable); a profile there replaces the "
        "built-in one of the same name. $EDGEFLEET_PROFILES_DIR is read too.",
        file_okay=False,
        show_default=False,
    ),
]
