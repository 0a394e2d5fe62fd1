"""Build the worker's adapters from `Settings`, once per process (after fork)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cached_property

import redis
from sqlalchemy import Engine, create_engine

from worker.connections import redis_client
from worker.drain.abuse import AbuseGuard, policy_from_settings
from worker.drain.drainer import DrainConfig, Drainer
from worker.drain.erasures import Erasures
from worker.drain.registry import Registry
from worker.drain.store import SignatureStore
from worker.drain.streams import SignatureStreams
from worker.keys import Keys
from worker.observability.batches import BatchObserver
from worker.observability.metrics import WorkerMetrics
from worker.pipeline.emails import EmailChecker
from worker.settings import Settings


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.settings.key_prefix, self.settings.shards)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings)

    @cached_property
    def engine(self) -> Engine:
        return create_engine(self.settings.sqlalchemy_url, pool_pre_ping=True, pool_size=2)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.redis, self.keys)

    @cached_property
    def streams(self) -> SignatureStreams:
        return SignatureStreams(self.redis, self.keys)

    @cached_property
    def metrics(self) -> WorkerMetrics:
        """This process's worker metrics (reminders count their emails here too)."""
        return WorkerMetrics()

    @cached_property
    def drainer(self) -> Drainer:
        s = self.settings
        config = DrainConfig(
            batch_size=s.batch_size,
            block_ms=s.block_ms,
            linger_ms=s.linger_ms,
            claim_idle_ms=s.claim_idle_ms,
            claim_interval_ms=s.claim_interval_ms,
            max_deliveries=s.max_deliveries,
            retry_max_seconds=s.db_retry_max_seconds,
        )
        observer = BatchObserver(self.metrics, self.redis, self.keys, s.max_deliveries)
        return Drainer(
            self.streams,
            SignatureStore(
                s.libpq_url,
                Erasures(self.redis, self.keys, s.ip_hash_secret).erased,
                confirm_resend_seconds=s.confirm_resend_seconds,
            ),
            self.registry,
            EmailChecker(deliverability=s.check_deliverability),
            config,
            consumer=f"{socket.gethostname()}:{os.getpid()}",
            on_batch=observer.on_batch,
            on_retry=observer.on_retry,
            abuse=self._abuse_guard(s) if s.abuse_checks else None,
        )

    def _abuse_guard(self, s: Settings) -> AbuseGuard:
        policy = policy_from_settings(s)
        return AbuseGuard(self.redis, self.keys, policy, windows_per_petition=s.rate_windows_per_petition)


_runtimes: dict[int, Runtime] = {}


def runtime(settings: Settings) -> Runtime:
    """This process's runtime; a forked child builds its own (sockets are not shared)."""
    pid = os.getpid()
    if pid not in _runtimes:
        _runtimes.clear()
        _runtimes[pid] = Runtime(settings)
    return _runtimes[pid]
