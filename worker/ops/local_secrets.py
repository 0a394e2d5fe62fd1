"""Secrets for a local run: `sigingest up` makes them once, random, and reuses them.

They live in `<DATA_DIR>/secrets.json`, readable by the owner only (0600), so a restarted local
system keeps verifying its own unsubscribe links and hashing addresses the same way. A secret
set in the environment is used instead of the file's.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from worker.settings import SECRETS, Settings

SECRETS_FILE = "secrets.json"


def local_secrets(home: Path) -> dict[str, str]:
    """The local run's secrets by variable name, made (0600) on the first call and then read."""
    path = home / SECRETS_FILE
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        found = {}
    wanted = {name.upper() for name in SECRETS}
    if (
        not isinstance(found, dict)
        or set(found) != wanted
        or not all(isinstance(v, str) for v in found.values())
    ):
        found = {name: secrets.token_hex(32) for name in sorted(wanted)}
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(found, out)
    os.chmod(path, 0o600)  # a file that existed with looser permissions is tightened too
    return found


def secrets_for_children(settings: Settings, home: Path) -> dict[str, str]:
    """The local secrets for every secret the environment did not set."""
    made = local_secrets(home)
    return {name: value for name, value in made.items() if name.lower() not in settings.model_fields_set}
