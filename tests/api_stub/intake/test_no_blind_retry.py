"""A lost reply never re-runs an append: the intake answers 503 and Redis holds one entry.

Redis is reached through a small TCP proxy in the test that, when told to, forwards one
EVALSHA to Redis (so it runs) and then cuts the connection before the reply comes back: what a
dropped connection or a reply timeout looks like from the intake.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import backlog
from worker.runtime import Runtime
from worker.settings import Settings


class CuttingProxy:
    """Forwards TCP to Redis; `cut_next` makes it drop the connection after forwarding the next
    EVALSHA, before any reply, so the client cannot know whether it ran (it did)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_next = threading.Event()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            muted = threading.Event()
            threading.Thread(target=self._replies, args=(server, client, muted), daemon=True).start()
            threading.Thread(target=self._requests, args=(client, server, muted), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, muted: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                cut = b"EVALSHA" in data and self.cut_next.is_set()
                if cut:
                    self.cut_next.clear()
                    muted.set()  # Redis's reply goes nowhere
                server.sendall(data)
                if cut:
                    time.sleep(0.2)  # let Redis run it
                    self.cuts += 1
                    break
        except OSError:
            pass
        for end in (client, server):
            end.close()

    def _replies(self, server: socket.socket, client: socket.socket, muted: threading.Event) -> None:
        try:
            while (data := server.recv(65536)) and not muted.is_set():
                client.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(settings: Settings) -> Iterator[CuttingProxy]:
    host_port = settings.redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = CuttingProxy(host, int(port))
    yield proxy
    proxy.close()


def test_a_connection_cut_after_the_append_answers_503_and_never_appends_twice(
    settings: Settings, rt: Runtime, make_petition: PetitionFactory, proxy: CuttingProxy
) -> None:
    petition = make_petition()
    database = settings.redis_url.rsplit("/", 1)[1]
    through_proxy = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}/{database}"})
    url = f"/petitions/{petition.id}/signatures"
    with TestClient(create_app(through_proxy)) as client:
        # Given an intake that has appended before (its script is loaded)
        assert client.post(url, json={"email": "warm@example.org", "name": "Ann"}).status_code == 202
        # When the connection drops after the next append reached Redis
        proxy.cut_next.set()
        key = {"Idempotency-Key": "k-cut"}
        body = {"email": "cut@example.org", "name": "Bob"}
        cut = client.post(url, json=body, headers=key)
        # Then the signer is told to retry, and the append ran exactly once
        assert proxy.cuts == 1
        assert cut.status_code == 503 and cut.headers["retry-after"]
        assert backlog(rt)[0] == 2
        # And the signer's retry with the same key gets the receipt of the append that ran
        again = client.post(url, json=body, headers=key)
        assert again.status_code == 202
        assert backlog(rt)[0] == 2
