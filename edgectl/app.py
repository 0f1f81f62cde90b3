"""The application object every command receives: settings, the API client, the terminal, abort."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import RenderableType

from edgectl.options import OutputFormat
from edgectl.terminal import Terminal

if TYPE_CHECKING:
    from edgectl.client import FleetClient
    from edgectl.config import Config


class Application:
    """Built once per invocation by the root command from the global options.

    The config and the HTTP client are made on first use, so local commands (``compile``,
    ``profiles``) and ``--help`` never read the config file or import httpx.
    """

    def __init__(
        self,
        terminal: Terminal,
        server: str | None = None,
        token: str | None = None,
        output: OutputFormat = OutputFormat.TABLE,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.terminal = terminal
        self.output = output
        self._server, self._token, self._env = server, token, env
        self._client: FleetClient | None = None

    @classmethod
    def from_context(cls, ctx: typer.Context, output: OutputFormat | None = None) -> Application:
        """The invocation's application; a command's own ``-o`` overrides the global one."""
        app = ctx.find_object(cls)
        if app is None:  # pragma: no cover - only when a command is invoked outside `edgectl`
            raise RuntimeError("edgectl commands must run under the edgectl root command")
        if output is not None:
            app.output = output
        return app

    @cached_property
    def config(self) -> Config:
        from edgectl.config import load_config  # pydantic only for commands that talk to the server

        return load_config(self._server, self._token, self._env)

    @property
    def api(self) -> FleetClient:
        """The fleet server's API client (raises ``ConfigError`` for bad settings)."""
        if self._client is None:
            from edgectl.client import FleetClient  # httpx only for commands that talk to the server

            self._client = FleetClient(self.config.server, self.config.token)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def json_output(self) -> bool:
        return self.output is OutputFormat.JSON

    def display(self, data: Any, view: Callable[[Any], RenderableType]) -> None:
        """Show a command's answer: ``data`` as JSON with ``-o json``, else ``view(data)``."""
        if self.json_output:
            self.terminal.json(data)
        else:
            self.terminal.show(view(data))

    def abort(self, message: str, code: int = 1) -> NoReturn:
        """Print ``message`` as one error line on stderr and exit with ``code`` (non-zero)."""
        self.terminal.error(message)
        raise typer.Exit(code)
