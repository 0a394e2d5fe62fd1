"""`sigingest invalidate`: dry run, real run in batches, idempotence, filters, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import PetitionFactory
from tests.helpers import read_invariant
from tests.worker.integrity.helpers import DB, add_signatures, signature_count, value
from worker.integrity.invalidate import BadCriteria, Criteria, PetitionMissing, count_matching, invalidate
from worker.ops.cli import main
from worker.runtime import Runtime

T0 = datetime(2020, 1, 1, 12, tzinfo=UTC)  # well before any starter signature (now)


def states(db: DB, petition_id: int) -> dict[str, int]:
    rows = db.execute(
        "SELECT state, count(*) FROM signatures WHERE petition_id = %s GROUP BY state", [petition_id]
    ).fetchall()
    return {str(s): int(n) for s, n in rows}  # type: ignore[call-overload]


def test_the_dry_run_counts_and_the_real_run_invalidates_in_batches_once(
    make_petition: PetitionFactory, db: DB, rt: Runtime
) -> None:
    petition = make_petition()
    add_signatures(db, petition.id, 10, tag="bot", ip_hash="aa11")
    add_signatures(db, petition.id, 5, tag="ok", ip_hash="bb22")
    add_signatures(db, petition.id, 2, tag="fr", ip_hash="aa11", state="fraudulent")
    criteria = Criteria(petition.id, ip_hash="aa11")

    assert count_matching(db, criteria) == 10
    assert states(db, petition.id) == {"validated": 16, "fraudulent": 2}, "the dry run changed nothing"

    done = invalidate(db, criteria, batch_size=3, publish=rt.registry.set_counts)
    assert (done.changed, done.signature_count) == (10, 6)
    assert states(db, petition.id) == {"validated": 6, "invalidated": 10, "fraudulent": 2}
    assert signature_count(db, petition.id) == 6
    card = rt.registry.get(petition.id)
    assert card is not None and card.signature_count == 6, "the lower count is published"

    again = invalidate(db, criteria, batch_size=3, publish=rt.registry.set_counts)
    assert (again.changed, again.signature_count) == (0, None)
    assert signature_count(db, petition.id) == 6 and count_matching(db, criteria) == 0
    assert read_invariant(db).counts_match


def test_filters_by_domain_email_and_time_window_combine(make_petition: PetitionFactory, db: DB) -> None:
    petition = make_petition()
    add_signatures(db, petition.id, 4, tag="early", domain="spam.example", accepted_at=T0)
    add_signatures(db, petition.id, 3, tag="late", domain="spam.example", accepted_at=T0 + timedelta(hours=2))
    add_signatures(db, petition.id, 3, tag="sub", domain="x.spam.example", accepted_at=T0)
    db.execute(
        "UPDATE signatures SET canonical_email = 'annlee@gmail.com' WHERE receipt = 'early1'",
    )
    window = Criteria(petition.id, domain="SPAM.example", since=T0, until=T0 + timedelta(hours=1))
    assert count_matching(db, window) == 3  # early2..4: early1 now has another domain
    assert count_matching(db, Criteria(petition.id, email="Ann.Lee+x@googlemail.com")) == 1
    assert invalidate(db, window).changed == 3
    assert (
        invalidate(db, Criteria(petition.id, since=T0 + timedelta(hours=1))).changed == 4
    )  # late1..3, starter
    assert signature_count(db, petition.id) == 4 and read_invariant(db).counts_match


def test_unsafe_or_malformed_requests_are_refused_and_change_nothing(
    make_petition: PetitionFactory, db: DB
) -> None:
    petition = make_petition()
    with pytest.raises(BadCriteria, match="at least one"):
        Criteria(petition.id)
    with pytest.raises(BadCriteria, match="before"):
        Criteria(petition.id, since=T0, until=T0)
    with pytest.raises(BadCriteria, match="email"):
        Criteria(petition.id, email="not-an-address")
    with pytest.raises(PetitionMissing):
        invalidate(db, Criteria(petition.id + 1, ip_hash="aa"))
    assert signature_count(db, petition.id) == 1


def test_the_command_line_dry_run_then_real_run(
    make_petition: PetitionFactory, db: DB, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    petition = make_petition()
    add_signatures(db, petition.id, 7, tag="bot", domain="spam.example")
    args = ["invalidate", "--petition", str(petition.id), "--domain", "spam.example"]
    assert main([*args, "--dry-run"]) == 0
    assert "7 signatures would be invalidated" in capsys.readouterr().out
    assert signature_count(db, petition.id) == 8
    assert main(args) == 0
    assert "invalidated 7 signatures" in capsys.readouterr().out
    assert main(args) == 0
    assert "invalidated 0 signatures" in capsys.readouterr().out
    assert signature_count(db, petition.id) == 1
    assert main(["invalidate", "--petition", str(petition.id)]) == 1
    assert "nothing changed" in capsys.readouterr().err
    assert value(db, "SELECT count(*) FROM signatures WHERE state = 'invalidated'") == 7
