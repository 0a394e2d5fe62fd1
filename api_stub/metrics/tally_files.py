"""Request figures shared by the intake processes behind one port (`API_WORKERS` > 1).

Granian's worker processes share one listening socket, so a scrape of `/metrics` lands on any
one of them. Each process writes its tallies to `<INTAKE_METRICS_DIR>/<pid>.json` once a second
(and when it exits); the process that serves a scrape adds the others' files to its own live
tallies. So a scrape is at most a second behind for the other processes, and a process that
exits keeps its final figures in the sum: counters never go backwards when one is replaced.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path

import orjson

from api_stub.metrics.tallies import RouteTally, Tallies

log = logging.getLogger("sigingest.intake")
WRITE_EVERY_SECONDS = 1.0


def dump(tallies: Tallies) -> bytes:
    routes = [
        [route, status, t.requests, t.seconds, t.bytes_in, t.bytes_out, t.buckets]
        for (route, status), t in list(tallies.routes.items())  # list(): the loop may add a key meanwhile
    ]
    return orjson.dumps({"redis_errors": tallies.redis_errors, "routes": routes})


def load(data: bytes) -> Tallies:
    body = orjson.loads(data)
    tallies = Tallies(redis_errors=int(body["redis_errors"]))
    for route, status, requests, seconds, bytes_in, bytes_out, buckets in body["routes"]:
        tally = tallies.routes[(route, int(status))] = RouteTally()
        tally.requests, tally.seconds = requests, seconds
        tally.bytes_in, tally.bytes_out, tally.buckets = bytes_in, bytes_out, list(buckets)
    return tallies


class TallyFiles:
    """This process's tallies written to a shared directory, and the other processes' read back."""

    def __init__(self, directory: str, own: Tallies) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._own = own
        self._path = self._dir / f"{os.getpid()}.json"

    def write(self) -> None:
        """Replace this process's file atomically: a reader never sees half of it."""
        temporary = self._path.with_suffix(".tmp")
        temporary.write_bytes(dump(self._own))
        os.replace(temporary, self._path)

    def everyone(self) -> list[Tallies]:
        """This process's live tallies and every other process's last written ones."""
        found = [self._own]
        for path in self._dir.glob("*.json"):
            if path == self._path:
                continue
            try:
                found.append(load(path.read_bytes()))
            except (OSError, ValueError, KeyError, TypeError) as exc:  # vanished or foreign: skip it
                log.warning("skipping intake metrics file %s: %s", path.name, type(exc).__name__)
        return found

    def start(self) -> None:
        """Write once a second on a daemon thread, and a last time at exit."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(WRITE_EVERY_SECONDS):
                self._write_logged()

        def last_write() -> None:
            stop.set()
            self._write_logged()

        self._write_logged()
        threading.Thread(target=loop, name="intake-metrics-files", daemon=True).start()
        atexit.register(last_write)

    def _write_logged(self) -> None:
        try:
            self.write()
        except OSError as exc:  # a full disk must not take the intake down; the scrape lags instead
            log.warning("cannot write intake metrics file: %s", type(exc).__name__)
