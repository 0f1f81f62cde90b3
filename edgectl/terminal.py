"""The one place edgectl writes to the screen.

stdout carries the answer: a table, or with ``-o json`` the JSON alone (nothing else ever goes to
stdout then, so it can be piped). stderr carries everything about getting there: progress,
spinners, live views, notes, warnings and errors. Progress displays draw only on a terminal, so
logs and pipes stay clean.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

PIPE_WIDTH = 160  # rows that don't wrap when piped into grep or a file


class Terminal:
    def __init__(self) -> None:
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)
        if not self.out.is_terminal and not os.environ.get("COLUMNS"):
            self.out.width = PIPE_WIDTH

    @property
    def interactive(self) -> bool:
        """Whether progress displays are drawn (stderr is a terminal)."""
        return self.err.is_terminal

    # -- the answer (stdout) ---------------------------------------------------------------------

    def json(self, data: Any) -> None:
        """Write ``data`` as JSON, unstyled, so that stdout parses as one JSON document."""
        self.out.file.write(json.dumps(data, indent=2, default=str) + "\n")
        self.out.file.flush()

    def show(self, renderable: RenderableType) -> None:
        self.out.print(renderable)

    # -- about the answer (stderr) ---------------------------------------------------------------

    def info(self, message: str) -> None:
        self.err.print(Text(message), soft_wrap=True)

    def success(self, message: str) -> None:
        self.err.print(Text(message, style="green"), soft_wrap=True)

    def warning(self, message: str) -> None:
        self.err.print(Text.assemble(("warning: ", "yellow bold"), message), soft_wrap=True)

    def error(self, message: str) -> None:
        self.err.print(Text.assemble(("error: ", "red bold"), message), soft_wrap=True)

    def note(self, renderable: RenderableType) -> None:
        """A table or other renderable that explains, not answers (e.g. a failure summary)."""
        self.err.print(renderable)

    @contextmanager
    def status(self, message: str) -> Iterator[Callable[[str], None]]:
        """A spinner with ``message``; yields a function that replaces the message."""
        if not self.interactive:
            yield lambda _msg: None
            return
        with self.err.status(Text(message)) as spinner:
            yield lambda msg: spinner.update(Text(msg))

    @contextmanager
    def transfer(self, description: str) -> Iterator[Callable[[int, int], None]]:
        """A byte progress bar; yields ``update(done, total)``."""
        if not self.interactive:
            yield lambda _done, _total: None
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.err, transient=True) as progress:
            task = progress.add_task(description, total=None)
            yield lambda done, total: progress.update(task, completed=done, total=total)

    @contextmanager
    def live(
        self, renderable: RenderableType, transient: bool = False
    ) -> Iterator[Callable[[RenderableType], None]]:
        """A view redrawn in place on stderr; yields ``update(renderable)``. Off a terminal nothing
        is drawn until the end, when the last view is printed once (unless ``transient``)."""
        if not self.interactive:
            last = [renderable]
            yield lambda r: last.__setitem__(0, r)
            if not transient:
                self.err.print(last[0])
            return
        with Live(renderable, console=self.err, transient=transient, refresh_per_second=4) as live:
            yield live.update
