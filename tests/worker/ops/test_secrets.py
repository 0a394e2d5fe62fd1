"""Secrets are never defaults: the intake, workers and beat refuse to start without real ones, naming
the variable; a local run (`sigingest up`) makes its own once and reuses them."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TEST_SECRETS, settings_env
from worker.ops.local_secrets import SECRETS_FILE, local_secrets, secrets_for_children
from worker.settings import OLD_DEFAULT_SECRET, InsecureSecrets, Settings

GOOD = TEST_SECRETS


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "IP_HASH_SECRET is not set"),
        (OLD_DEFAULT_SECRET, "IP_HASH_SECRET is the old published default"),
        ("x" * 31, "IP_HASH_SECRET is shorter than 32 characters"),
    ],
)
def test_an_unfit_secret_is_named(value: str, words: str) -> None:
    settings = Settings.from_env({}, **{**GOOD, "ip_hash_secret": value})
    assert settings.secret_problems() == [words]
    with pytest.raises(InsecureSecrets, match=words):
        settings.require_secrets()


def test_fit_secrets_pass_and_every_unset_one_is_named() -> None:
    Settings.from_env({}, **GOOD).require_secrets()
    assert Settings.from_env({}).secret_problems() == [
        "IP_HASH_SECRET is not set",
        "CSRF_SECRET is not set",
        "UNSUBSCRIBE_SECRET is not set",
    ]


COMMANDS = {
    "api": [sys.executable, "-m", "worker.ops.cli", "api", "--port", "1"],
    "worker": [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "ingest", "-c", "1"],
    "beat": [sys.executable, "-m", "celery", "-A", "worker", "beat", "--schedule", "{tmp}/beat"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("variable", "value"),
    [("IP_HASH_SECRET", ""), ("CSRF_SECRET", "short"), ("UNSUBSCRIBE_SECRET", OLD_DEFAULT_SECRET)],
)
def test_the_intake_workers_and_beat_refuse_to_start_naming_the_secret(
    settings: Settings, tmp_path: Path, command: str, variable: str, value: str
) -> None:
    env = settings_env(settings, WORKER_METRICS_PORT="0")
    env[variable] = value
    argv = [part.format(tmp=tmp_path) for part in COMMANDS[command]]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0, done.stdout + done.stderr
    assert f"refusing to start: {variable}" in done.stderr, done.stderr


def test_a_local_run_makes_its_secrets_once_private_and_reuses_them(tmp_path: Path) -> None:
    home = tmp_path / ".sigingest"
    made = local_secrets(home)
    assert set(made) == {"IP_HASH_SECRET", "CSRF_SECRET", "UNSUBSCRIBE_SECRET"}
    assert all(len(value) >= 32 for value in made.values()) and len(set(made.values())) == 3
    assert stat.S_IMODE((home / SECRETS_FILE).stat().st_mode) == 0o600
    assert local_secrets(home) == made  # reused, not made again
    Settings.from_env({k: v for k, v in made.items()}).require_secrets()

    # A secret set in the environment wins over the file's
    settings = Settings.from_env({"CSRF_SECRET": GOOD["csrf_secret"]})
    assert set(secrets_for_children(settings, home)) == {"IP_HASH_SECRET", "UNSUBSCRIBE_SECRET"}

    # A damaged file is replaced, still private
    (home / SECRETS_FILE).write_text("{not json")
    (home / SECRETS_FILE).chmod(0o644)
    again = local_secrets(home)
    assert again != made and stat.S_IMODE((home / SECRETS_FILE).stat().st_mode) == 0o600
