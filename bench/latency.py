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
from typing import Any

import httpx
import psycopg
import redis

from bench.data import signatures
from worker.keys import Keys
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.settings import Settings
from worker.streams import lua


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
    """Polls PostgreSQL for newly committed rows and the intake for a petition's live count."""

    def __init__(self, dsn: str, base: str, petition: int) -> None:
        self.dsn, self.base, self.petition = dsn, base, petition
        self.committed: dict[str, tuple[float, int]] = {}  # receipt -> (time, db count then)
        self.live: list[tuple[float, int]] = []
        self.wanted: set[str] = set()
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

    def _poll_db(self) -> None:
        # Ids are taken at insert and become visible at commit, so two workers' batches may
        # appear out of id order: each poll looks again at a window below the highest id seen.
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            floor = 0
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT s.id, s.receipt, (SELECT signature_count FROM petitions WHERE id = %s)"
                    " FROM signatures s WHERE s.id > %s AND s.email LIKE 'probe.%%'",
                    (self.petition, floor),
                ).fetchall()
                now = time.monotonic()
                for _, receipt, count in rows:
                    self.committed.setdefault(receipt, (now, int(count)))
                top = conn.execute("SELECT coalesce(max(id), 0) FROM signatures").fetchone()
                floor = max(floor, int(top[0]) - 20_000) if top else floor  # type: ignore[call-overload]
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


def probe(base: str, petitions: list[int], rate: float, seconds: float, tag: str) -> dict[str, float]:
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
                sent[r.json()["receipt"]] = time.monotonic()
            i += 1
            time.sleep(max(0.0, 1 / rate - 0.001))
    return sent


def feed(settings_json: str, petition_ids: list[int], rate: float, seconds: float, tag: str) -> None:
    """Offer `rate` signatures/s through the intake's Lua append (a separate process)."""
    settings = Settings.model_validate_json(settings_json)
    keys = Keys(settings.key_prefix, settings.shards)
    client = redis.Redis.from_url(settings.redis_url)
    append = client.register_script(lua("append"))
    data = signatures(int(rate * seconds) + 1, seed=11, tag=tag)
    start = time.monotonic()
    done = 0
    while done < len(data):
        due = min(len(data), int((time.monotonic() - start) * rate))
        if due <= done:
            time.sleep(0.005)
            continue
        now = time.time_ns() // 1_000_000
        with client.pipeline(transaction=False) as pipe:
            for i in range(done, due):
                sig = data[i]
                pid = petition_ids[sig.petition]
                stream = keys.stream(keys.shard_for_email(sig.email))
                payload = encode(f"f{tag}{i}", pid, now, None, SignatureFields(sig.email, sig.name))
                # The intake's four keys (no idempotency key: the stream stands in for it).
                append(
                    keys=[keys.petition(pid), stream, stream, keys.totals],
                    args=[payload, "", 1, 0, "0"],
                    client=pipe,
                )
            pipe.execute()
        done = due
    client.close()


def start_feed(
    settings: Settings, petition_ids: list[int], rate: float, seconds: float
) -> multiprocessing.Process:
    proc = multiprocessing.get_context("spawn").Process(
        target=feed, args=(settings.model_dump_json(), petition_ids, rate, seconds, uuid.uuid4().hex[:6])
    )
    proc.start()
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
