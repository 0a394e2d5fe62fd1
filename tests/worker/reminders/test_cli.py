"""`sigingest reminders send` and `sigingest reminders outbox` as an operator runs them."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PetitionFactory
from tests.helpers import settings_env
from tests.worker.reminders.conftest import Recorder, Signer, free_port
from worker.ops.cli import build_parser
from worker.settings import Settings


def test_send_does_one_run_now_and_prints_its_counts(
    rsettings: Settings,
    make_petition: PetitionFactory,
    sign: Signer,
    mailbox: Recorder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clara = make_petition("Now", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", hours_ago=100)
    args = build_parser().parse_args(["reminders", "send"])
    assert args.run(args, rsettings) == 0
    assert json.loads(capsys.readouterr().out)["sent"] == 1
    assert mailbox.recipients() == ["ann@example.org"]


def test_the_outbox_command_writes_what_it_receives_and_stops_cleanly_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = settings_env(settings, SMTP_URL=f"smtp://127.0.0.1:{port}")
    outbox = subprocess.Popen(
        [sys.executable, "-m", "worker.ops.cli", "reminders", "outbox", "--dir", str(tmp_path / "out")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert outbox.stdout is not None
        assert f"SMTP on 127.0.0.1:{port}" in outbox.stdout.readline()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.org"], "Subject: hello\r\n\r\nbody\r\n")
        outbox.send_signal(signal.SIGTERM)
        assert outbox.wait(15) == 0
    finally:
        if outbox.poll() is None:
            outbox.kill()
            outbox.wait()
    [eml] = list((tmp_path / "out").glob("*.eml"))
    assert b"Subject: hello" in eml.read_bytes()


def test_durations_are_read_as_seconds_or_with_a_unit() -> None:
    s = Settings.from_env({"REMINDER_MIN_INTERVAL": "7d", "REMINDER_EVERY": "30m"})
    assert (s.reminder_min_interval, s.reminder_every) == (604_800.0, 1_800.0)
    assert Settings.from_env({"REMINDER_EVERY": "90"}).reminder_every == 90.0
    with pytest.raises(ValueError):
        Settings.from_env({"REMINDER_EVERY": "soon"})
