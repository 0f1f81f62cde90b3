"""Options the keys commands share."""

from pathlib import Path
from typing import Annotated

import typer

KeysDir = Annotated[Path, typer.Option("--dir", help="the operator's key directory")]
PassphraseFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="file whose first line encrypts (decrypts) the root keys"),
]
