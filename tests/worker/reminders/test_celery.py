"""Celery wiring: beat schedules `reminders.send_due`, routed to the `reminders` queue, and a real
worker started with `-Q reminders` sends the emails over SMTP, once, however many runs beat starts."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import PetitionFactory
from tests.helpers import Child, settings_env, start_worker, stop_process, wait_for
from tests.worker.reminders.conftest import Recorder, Signer, free_port, statuses
from worker.keys import REMINDERS_QUEUE
from worker.reminders.run import RunReport
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


def test_beat_schedules_send_due_every_reminder_every_on_the_reminders_queue() -> None:
    from worker.celery import app, settings

    entry = app.conf.beat_schedule["reminders.send_due"]
    assert entry["task"] == "reminders.send_due"
    assert entry["schedule"] == settings.reminder_every
    assert app.amqp.router.route({}, "reminders.send_due")["queue"].name == REMINDERS_QUEUE


@pytest.fixture
def broker() -> Iterator[str]:
    """A private Redis as Celery's broker, so no other test run's worker can take our tasks."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        wait_for(lambda: _pings(client), timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_beat_and_a_reminders_worker_send_each_reminder_once_over_smtp(
    rsettings: Settings,
    broker: str,
    make_petition: PetitionFactory,
    sign: Signer,
    mailbox: Recorder,
    db: psycopg.Connection[tuple[object, ...]],
    tmp_path: Path,
) -> None:
    clara = make_petition("Beat", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", hours_ago=100)
    sign(old.id, "bob@example.org", hours_ago=100)
    # Beat every second: many runs overlap or follow each other while the worker sends
    settings = rsettings.model_copy(update={"celery_broker_url": broker, "reminder_every": 1.0})
    worker = start_worker(settings, f"r{uuid.uuid4().hex[:8]}", concurrency=2, queues="reminders")
    beat = Child(
        [sys.executable, "-m", "celery", "-A", "worker", "beat", "--schedule", str(tmp_path / "beat"),
         "--loglevel", "INFO"],
        env=settings_env(settings),
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(mailbox.received) >= 2, timeout=90)
        time.sleep(4)  # several more beat ticks: later runs must find nothing to send
    finally:
        beat_output = stop_process(beat)
        worker_output = stop_process(worker)
    assert "reminders.send_due" in beat_output, beat_output[-2000:]
    assert worker_output.count("Task reminders.send_due[") >= 6, worker_output[-3000:]  # 3 runs or more
    assert worker_output.count("succeeded in") >= 3, worker_output[-3000:]
    assert mailbox.recipients() == ["ann@example.org", "bob@example.org"]
    assert set(statuses(db).values()) == {"sent"}
    assert (
        "ann@example.org" not in worker_output and "bob@example.org" not in worker_output
    )  # no addresses logged


def test_one_follow_up_is_queued_for_due_retries_however_many_runs_see_them(rt: Runtime) -> None:
    from worker.reminders.tasks import schedule_follow_up

    queued: list[float] = []
    retrying = RunReport("a", next_retry_in=120.0)
    assert schedule_follow_up(retrying, rt.redis, rt.keys, 3600.0, queued.append) == 120.0
    assert (
        schedule_follow_up(RunReport("b", next_retry_in=60.0), rt.redis, rt.keys, 3600.0, queued.append)
        is None
    )
    assert queued == [120.0]
    assert 0 < rt.redis.pttl(rt.keys.reminder_follow_up) <= 120_000
    # Nothing to retry, or a run that did not get the lock: nothing queued
    rt.redis.delete(rt.keys.reminder_follow_up)
    assert schedule_follow_up(RunReport("c"), rt.redis, rt.keys, 3600.0, queued.append) is None
    assert (
        schedule_follow_up(
            RunReport("d", ran=False, next_retry_in=5.0), rt.redis, rt.keys, 3600, queued.append
        )
        is None
    )
    assert queued == [120.0]
