"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the Compose
specification schema, and every command they run exists in this project."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from worker.keys import INGEST_QUEUE
from worker.ops.cli import build_parser
from worker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "api", "worker", "beat")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text())
    return data


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_the_compose_file_follows_the_compose_specification() -> None:
    done = validate(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_does_refuse_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period: 90s", "stop_grace_periods: 90s"))
    assert validate(broken).returncode != 0


def test_the_services_are_all_there_with_volumes_healthchecks_and_one_beat() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "postgres", *APP_SERVICES}
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert redis_command[redis_command.index("--appendfsync") + 1] == "everysec"
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--maxmemory" in redis_command
    for name in ("redis", "postgres"):
        assert services[name]["volumes"] and services[name]["healthcheck"]["test"]
    assert services["migrate"]["restart"] == "no"
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "deploy" not in services["worker"]  # scaled with --scale worker=N


def test_a_worker_is_given_time_for_a_drain_slice_and_its_batch_before_it_is_killed() -> None:
    defaults = Settings.from_env({})
    grace = seconds(compose()["services"]["worker"]["stop_grace_period"])
    assert grace >= 4 * defaults.drain_slice_seconds + defaults.db_retry_max_seconds


def test_every_variable_the_app_services_get_is_a_setting() -> None:
    known = {name.upper() for name in Settings.model_fields}
    for name in APP_SERVICES:
        env = compose()["services"][name]["environment"]
        assert set(env) <= known, (name, set(env) - known)
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert "@postgres:5432/" in env["DATABASE_URL"]


def commands() -> list[list[str]]:
    services = compose()["services"]
    found = [services[name]["command"] for name in APP_SERVICES]
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd, "the Dockerfile has an exec-form CMD"
    return [*found, json.loads(cmd[1])]


@pytest.mark.parametrize("command", commands(), ids=" ".join)
def test_every_command_the_containers_run_exists_in_the_project(command: list[str]) -> None:
    assert command[0] == "sigingest"
    args = build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown command
    assert callable(args.run)


def test_the_worker_command_consumes_the_ingest_queue_through_celery_a_worker() -> None:
    args = build_parser().parse_args(compose()["services"]["worker"]["command"][1:])
    assert args.queues == INGEST_QUEUE
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_api_healthcheck_is_valid_python_against_readyz() -> None:
    test = compose()["services"]["api"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "healthcheck", "exec")
    assert "/readyz" in test[3]


HA = ROOT / "docker-compose.ha.yml"


def test_the_high_availability_file_follows_the_compose_specification() -> None:
    done = validate(HA)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_high_availability_file_adds_a_replica_and_three_sentinels_with_a_quorum_of_two() -> None:
    services = YAML(typ="safe").load(HA.read_text())["services"]
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :] == ["redis", "6379"]
    sentinels = [name for name in services if name.startswith("sentinel-")]
    assert len(sentinels) == 3
    for name in sentinels:
        script = services[name]["command"][-1]
        assert "sentinel monitor sigingest redis 6379 2" in script and "--sentinel" in script


def test_every_app_service_finds_redis_through_the_sentinels_of_the_high_availability_file() -> None:
    ha = YAML(typ="safe").load(HA.read_text())["services"]
    known = {name.upper() for name in Settings.model_fields}
    for name in APP_SERVICES:
        env = ha[name]["environment"]
        assert set(env) <= known, (name, set(env) - known)
        hosts = [entry.split(":")[0] for entry in env["REDIS_SENTINELS"].split(",")]
        assert sorted(hosts) == sorted(n for n in ha if n.startswith("sentinel-"))
        assert env["REDIS_SENTINEL_MASTER"] == "sigingest"
