"""(d) freshness and (e) fairness: time from a probe's 202 to its committed row (and, for
freshness, to a live count in GET /petitions/{id} that includes it).

Probes are real HTTP submissions. Background load at a set rate goes through the intake's own
Lua append from a separate process (the HTTP intake alone cannot offer half the drain rate).
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
import uuid
from multiprocessing.synchronize import Event
from typing import Any

import hiredis
import httpx
import psycopg
import redis

from bench.data import signatures
from worker.drain.streams import lua
from worker.keys import Keys
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.settings import Settings


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values_s: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    return {
        "samples": len(ms),
        "p50_ms": round(pct(ms, 50), 1),
        "p99_ms": round(pct(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
    }


class Watch:
    """Polls PostgreSQL for the probes' committed rows and the intake for a petition's live count.

    The row poll asks for the outstanding probe receipts by their unique index, so the watch
    costs PostgreSQL a few index look-ups every 10 ms whatever the load; scanning the newest
    rows instead cost about a third of a core at 25,000 inserts/s, taken from the drain it
    measured."""

    def __init__(self, dsn: str, base: str, petition: int) -> None:
        self.dsn, self.base, self.petition = dsn, base, petition
        self.committed: dict[str, tuple[float, int]] = {}  # receipt -> (time, db count then)
        self.live: list[tuple[float, int]] = []
        self._wanted: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll_db), threading.Thread(target=self._poll_live)]

    def __enter__(self) -> Watch:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def want(self, receipt: str) -> None:
        """Watch for this receipt's row (called by `probe` at each 202)."""
        with self._lock:
            self._wanted.add(receipt)

    def _poll_db(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                with self._lock:
                    outstanding = list(self._wanted - self.committed.keys())
                if outstanding:
                    rows = conn.execute(
                        "SELECT receipt, (SELECT signature_count FROM petitions WHERE id = %s)"
                        " FROM signatures WHERE receipt = ANY(%s)",
                        (self.petition, outstanding),
                    ).fetchall()
                    now = time.monotonic()
                    for receipt, count in rows:
                        self.committed.setdefault(receipt, (now, int(count)))
                time.sleep(0.01)

    def _poll_live(self) -> None:
        with httpx.Client(base_url=self.base, timeout=2) as client:
            while not self._stop.is_set():
                try:
                    count = int(client.get(f"/petitions/{self.petition}").json()["signature_count"])
                    self.live.append((time.monotonic(), count))
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                time.sleep(0.01)

    def live_time(self, count: int, after: float) -> float | None:
        for t, c in self.live:
            if t >= after and c >= count:
                return t
        return None


def probe(
    watch: Watch, base: str, petitions: list[int], rate: float, seconds: float, tag: str
) -> dict[str, float]:
    """Submit one signature every 1/rate s round the petitions; receipt -> time of the 202."""
    sent: dict[str, float] = {}
    end = time.monotonic() + seconds
    i = 0
    with httpx.Client(base_url=base, timeout=5) as client:
        while time.monotonic() < end:
            petition = petitions[i % len(petitions)]
            r = client.post(
                f"/petitions/{petition}/signatures",
                json={"email": f"probe.{tag}.{i}@example.org", "name": "Probe Signer"},
            )
            if r.status_code == 202:
                receipt = r.json()["receipt"]
                sent[receipt] = time.monotonic()
                watch.want(receipt)
            i += 1
            time.sleep(max(0.0, 1 / rate - 0.001))
    return sent


def packed_appends(
    settings: Settings, sha: str, petition_ids: list[int], count: int, tag: str
) -> list[bytes]:
    """`count` bench signatures as the intake's append calls (EVALSHA with its four keys, no
    idempotency key: the stream stands in for it), packed for the wire."""
    keys = Keys(settings.key_prefix, settings.shards)
    now = time.time_ns() // 1_000_000
    out = []
    for i, sig in enumerate(signatures(count, seed=11, tag=tag)):
        pid = petition_ids[sig.petition]
        stream = keys.stream(keys.shard_for_email(sig.email))
        payload = encode(f"f{tag}{i}", pid, now, None, SignatureFields(sig.email, sig.name))
        out.append(
            hiredis.pack_command(
                ("EVALSHA", sha, 4, keys.petition(pid), stream, stream, keys.totals, payload, "", 1, 0, "0")
            )
        )
    return out


def feed(
    settings_json: str, petition_ids: list[int], rate: float, seconds: float, tag: str, ready: Event
) -> None:
    """Offer `rate` signatures/s through the intake's Lua append (a separate process).

    Everything is built and packed before the clock starts (the entries' accepted-at is when
    they were built), so the feed's own CPU while it runs is writing bytes and reading the
    replies: ~2 µs a signature here, where a redis-py pipeline per tick cost ~28 µs (and the
    Redis server ~13 µs per append instead of ~7), CPU the drain it measures needs on two
    shared cores. Any reply but `ok` stops the feed with an error, so the bench cannot report
    figures for a load that was not offered."""
    settings = Settings.model_validate_json(settings_json)
    client = redis.Redis.from_url(settings.redis_url)
    sha = client.script_load(lua("append"))
    calls = packed_appends(settings, sha, petition_ids, int(rate * seconds) + 1, tag)
    ready.set()
    conn = client.connection_pool.get_connection()
    sock = conn._sock  # connected, authenticated, database selected; replies read with hiredis
    assert sock is not None
    replies = hiredis.Reader()
    try:
        start = time.monotonic()
        sent = 0
        while sent < len(calls):
            due = min(len(calls), int((time.monotonic() - start) * rate))
            if due > sent:
                sock.sendall(b"".join(calls[sent:due]))
            # Read after a pause, when a tick's replies are all there: one recv for the lot,
            # where reading at once took a recv (and a context switch) per two or three replies.
            time.sleep(0.005)
            for _ in range(due - sent):
                reply = replies.gets()
                while reply is False:
                    replies.feed(sock.recv(1 << 20))
                    reply = replies.gets()
                if not (isinstance(reply, list) and reply[:1] == [b"ok"]):
                    raise RuntimeError(f"the intake's append answered {reply!r}")
            sent = max(sent, due)
    finally:
        client.connection_pool.release(conn)
        client.close()


def start_feed(
    settings: Settings, petition_ids: list[int], rate: float, seconds: float
) -> multiprocessing.Process:
    """Start the feed and return once its calls are packed and it begins offering load."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    proc = context.Process(
        target=feed,
        args=(settings.model_dump_json(), petition_ids, rate, seconds, uuid.uuid4().hex[:6], ready),
    )
    proc.start()
    while not ready.wait(0.1):
        if not proc.is_alive():
            raise RuntimeError(f"the freshness feed failed before it started (exit code {proc.exitcode})")
    return proc


def to_commit(watch: Watch, sent: dict[str, float], wait: float = 10.0) -> list[float]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not all(r in watch.committed for r in sent):
        time.sleep(0.05)
    return [watch.committed[r][0] - t for r, t in sent.items() if r in watch.committed]


def to_live(watch: Watch, sent: dict[str, float]) -> list[float]:
    out = []
    for receipt, t in sent.items():
        if receipt in watch.committed:
            _, count = watch.committed[receipt]
            seen = watch.live_time(count, t)
            if seen is not None:
                out.append(max(0.0, seen - t))
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
