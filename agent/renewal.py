"""Renews the device certificate before it expires, over mTLS with the current one (no token).

A daemon thread wakes every ``interval`` seconds; when :func:`agent.identity.renewal_due` says so,
it sends a CSR for the same key to the device listener, stores the new certificate atomically and
loads it into the TLS contexts in use (the MQTT link's and the download client's), so the next
connection presents it. A failure is retried at the next wake; a refusal (revoked) is logged once
an hour at most, since only a new enrollment token helps then.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from agent import identity
from agent.errors import EnrollmentError
from agent.registration import renew

log = logging.getLogger(__name__)


class Renewer:
    def __init__(
        self,
        data_dir: Path,
        device_id: str,
        device_api: str,
        contexts: Sequence[ssl.SSLContext],
        *,
        interval: float = 600.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        on_renewed: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.device_id = device_id
        self.device_api = device_api
        self.contexts = list(contexts)
        self.interval = interval
        self.clock = clock
        self.on_renewed = on_renewed
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edge-agent-renewal", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def renew_if_due(self) -> bool:
        """Renew now if due. Returns whether it did. Raises :class:`EnrollmentError` (refused),
        ``httpx.HTTPError``, ``ValueError`` (a certificate not for this key), :class:`OSError`."""
        if not identity.renewal_due(identity.certificate(self.data_dir), self.clock()):
            return False
        csr = identity.make_csr(self.data_dir, self.device_id)
        with identity.device_http_client(self.data_dir) as client:
            answer = renew(client, self.device_api, csr)
        cert = identity.store_certificate(self.data_dir, answer.certificate)
        for ctx in self.contexts:
            identity.reload(ctx, self.data_dir)
        self.renewals += 1
        log.info("renewed the device certificate (valid until %s)", cert.not_valid_after_utc.isoformat())
        if self.on_renewed is not None:
            self.on_renewed()
        return True

    def _run(self) -> None:
        while True:
            try:
                self.renew_if_due()
            except EnrollmentError as exc:
                log.error("%s", exc)
            except (httpx.HTTPError, ValueError, OSError) as exc:
                log.warning(
                    "certificate renewal failed (%s: %s); trying again later", type(exc).__name__, exc
                )
            if self._stop.wait(self.interval):
                return
