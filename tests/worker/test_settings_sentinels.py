"""REDIS_SENTINELS, REDIS_SENTINEL_MASTER and ACK_DURABILITY as settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.settings import Settings


def test_without_sentinels_everything_uses_redis_url() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://:pw@10.0.0.1:6380/3"})
    assert s.sentinels == [] and s.broker_url == "redis://:pw@10.0.0.1:6380/3"
    assert s.broker_transport_options == {} and s.ack_durability == "local"


def test_sentinels_give_kombu_a_sentinel_url_with_the_password_and_database() -> None:
    s = Settings.from_env(
        {
            "REDIS_URL": "redis://:pw@ignored:1/3",
            "REDIS_SENTINELS": "s1:26379, s2:26380",
            "REDIS_SENTINEL_MASTER": "m",
        }
    )
    assert s.sentinels == [("s1", 26379), ("s2", 26380)]
    assert s.broker_url == "sentinel://:pw@s1:26379/3;sentinel://:pw@s2:26380/3"
    assert s.broker_transport_options == {"master_name": "m"}


def test_an_explicit_broker_url_wins_over_the_sentinels() -> None:
    s = Settings.from_env(
        {"REDIS_SENTINELS": "s1:1", "REDIS_SENTINEL_MASTER": "m", "CELERY_BROKER_URL": "redis://b/1"}
    )
    assert s.broker_url == "redis://b/1" and s.broker_transport_options == {}


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_SENTINELS": "s1:26379"},  # no master name
        {"REDIS_SENTINELS": "s1", "REDIS_SENTINEL_MASTER": "m"},  # no port
        {"REDIS_SENTINELS": "s1:99999", "REDIS_SENTINEL_MASTER": "m"},
        {"ACK_DURABILITY": "quorum"},
        {"ACK_REPLICAS": "0"},
        {"ACK_TIMEOUT_MS": "0"},
    ],
)
def test_bad_high_availability_settings_are_refused_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings.from_env(env)
