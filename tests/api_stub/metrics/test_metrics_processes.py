"""With several intake processes behind one port (`sigingest api --workers 2`), every scrape of
`/metrics` counts the requests all of them answered, whichever process serves the scrape."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api_stub.metrics.tallies import RouteTally, Tallies, summed
from api_stub.metrics.tally_files import TallyFiles, dump, load
from tests.conftest import PetitionFactory
from tests.faults.harness import free_port
from tests.helpers import Child, healthy, settings_env, stop_process, wait_for
from worker.observability import metrics as m
from worker.settings import Settings

ROUTE = "/petitions/{petition_id}/signatures"


def tally(requests: int, seconds: float, bucket: int) -> RouteTally:
    t = RouteTally()
    t.requests, t.seconds, t.bytes_in, t.bytes_out = requests, seconds, 10 * requests, 5 * requests
    t.buckets[bucket] = requests
    return t


def test_tallies_survive_the_file_format_and_add_up() -> None:
    a = Tallies({(ROUTE, 202): tally(3, 0.5, 0), ("/healthz", 200): tally(1, 0.1, 2)}, redis_errors=2)
    b = Tallies({(ROUTE, 202): tally(4, 0.25, 1), (ROUTE, 503): tally(1, 0.1, 0)}, redis_errors=1)
    total = summed([load(dump(a)), load(dump(b))])
    assert total.redis_errors == 3
    assert sorted(total.routes) == [("/healthz", 200), (ROUTE, 202), (ROUTE, 503)]
    signed = total.routes[(ROUTE, 202)]
    assert (signed.requests, signed.seconds, signed.bytes_in, signed.bytes_out) == (7, 0.75, 70, 35)
    assert signed.buckets[:3] == [3, 4, 0] and sum(signed.buckets) == 7


def test_a_process_reads_the_others_files_and_skips_a_broken_one(tmp_path: Path) -> None:
    own = Tallies({(ROUTE, 202): tally(2, 0.1, 0)})
    (tmp_path / "1.json").write_bytes(dump(Tallies({(ROUTE, 202): tally(5, 0.2, 0)}, redis_errors=1)))
    (tmp_path / "2.json").write_bytes(b"{not json")
    files = TallyFiles(str(tmp_path), own)
    files.write()  # its own file is not counted twice
    total = summed(files.everyone())
    assert total.routes[(ROUTE, 202)].requests == 7 and total.redis_errors == 1


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def sign_concurrently(url: str, petition_id: int, count: int) -> None:
    """`count` signatures, 16 at a time, each on a connection of its own: the kernel hands the
    connections to both intake processes."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        pending = iter(range(count))

        async def lane() -> None:
            for n in pending:
                body = {"email": f"p{n}@example.org", "name": "P"}
                response = await client.post(f"/petitions/{petition_id}/signatures", json=body)
                assert response.status_code == 202

        await asyncio.gather(*(lane() for _ in range(16)))


@pytest.mark.slow
def test_every_scrape_counts_the_requests_of_both_intake_processes(
    settings: Settings, make_petition: PetitionFactory, tmp_path: Path
) -> None:
    petition = make_petition()
    port = free_port()
    shared = tmp_path / "intake-metrics"
    process = Child(
        [sys.executable, "-m", "worker.ops.cli", "api", "--port", str(port), "--workers", "2"],
        env=settings_env(settings, INTAKE_METRICS_DIR=str(shared)),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for(lambda: healthy(url), timeout=60, interval=0.1)
        wait_for(lambda: len(list(shared.glob("*.json"))) == 2, timeout=30)  # both processes up
        asyncio.run(sign_concurrently(url, petition.id, 400))
        accepted = (m.INTAKE_REQUESTS, (("route", ROUTE), ("status", "202")))
        # Other processes' figures are as old as their last file. One full scrape means every
        # request is in both processes' live tallies; once each has written its file again after
        # that, every scrape, served by either process, must say 400. (Checking right after the
        # first full scrape was a race: it may have been served by the process whose own file
        # was still a second old, and the next scrape, by the other process, read that file.)
        wait_for(lambda: scrape(url).get(accepted) == 400, timeout=15, interval=0.2)
        written = {path: path.stat().st_mtime_ns for path in shared.glob("*.json")}
        wait_for(lambda: all(path.stat().st_mtime_ns > t for path, t in written.items()), timeout=15)
        for _ in range(20):
            samples = scrape(url)
            assert samples[accepted] == 400
            assert samples[(f"{m.INTAKE_REQUEST_DURATION}_count", (("route", ROUTE),))] == 400
        # Both processes answered signatures (or the test would prove nothing).
        per_process = [load(path.read_bytes()).routes.get((ROUTE, 202)) for path in shared.glob("*.json")]
        assert all(t is not None and t.requests > 0 for t in per_process), per_process
    finally:
        output = stop_process(process, timeout=15)
    assert "Traceback" not in output, output[-3000:]
