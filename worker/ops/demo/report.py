"""The demo's end: what was expected from what the intake accepted, what PostgreSQL and the
intake say, and the summary. `checks` is pure; `print_summary` only prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from worker.drain.registry import PetitionCard
from worker.ops.demo.data import Kind, Snapshot, Submission, Tally
from worker.pipeline.wording import call_to_action

Check = tuple[str, object, object, bool]  # (what, expected, found, ok)


@dataclass(frozen=True)
class Outcome:
    card: PetitionCard
    plan: list[Submission]
    tally: Tally
    base: Snapshot
    final: Snapshot
    visitor: dict[str, Any]  # GET /petitions/{id} from the intake, after the run
    processed_at: float  # monotonic time when every accepted receipt was accounted for


def checks(o: Outcome) -> list[Check]:
    """Each promise of the pipeline, as the figure expected and the figure found."""
    delta = o.final.minus(o.base)
    signers = len(o.tally.signers)
    malformed = sum(1 for s in o.plan if s.kind is Kind.MALFORMED)
    visitor_text = call_to_action(o.card.starter_name, str(o.visitor.get("status")), o.final.count)
    found: list[tuple[str, object, object]] = [
        ("unique valid signers = new signature rows", signers, delta.rows),
        ("petition count increase", signers, delta.count),
        ("petition count = its validated rows", o.final.rows, o.final.count),
        ("duplicates recorded", o.tally.accepted_signed - signers, delta.duplicates),
        ("rejected by the workers (invalid email)", o.tally.accepted_invalid, delta.rejected),
        ("rejected at the intake (422)", malformed, o.tally.malformed),
        ("submissions given up after retries", 0, o.tally.given_up),
        ("count a visitor sees", o.final.count, o.visitor.get("signature_count")),
        ("text a visitor sees", visitor_text, o.visitor.get("call_to_action")),
    ]
    return [(what, expected, got, expected == got) for what, expected, got in found]


def print_summary(console: Console, o: Outcome, results: list[Check]) -> None:
    table = Table(title=f"checked against PostgreSQL: petition {o.card.id}")
    for column in ("check", "expected", "found", ""):
        table.add_column(column)
    for what, expected, got, ok in results:
        mark = "[green]ok[/green]" if ok else "[red]MISMATCH[/red]"
        table.add_row(what, _figure(expected), _figure(got), mark)
    console.print(table)
    sending = (o.tally.finished or o.processed_at) - o.tally.started
    processing = o.processed_at - o.tally.started
    console.print(
        f"sent {o.tally.sent:,} submissions in {sending:.1f}s ({o.tally.sent / max(sending, 1e-9):,.0f}/s); "
        f"every accepted one accounted for after {processing:.1f}s "
        f"({o.tally.accepted / max(processing, 1e-9):,.0f}/s end to end)",
        soft_wrap=True,
    )
    console.print(f"a visitor sees: [bold]{o.visitor.get('call_to_action')}[/bold]", soft_wrap=True)
    if all(ok for *_, ok in results):
        console.print("[green]all checks passed[/green]")
    else:
        console.print("[red]MISMATCH: the figures above disagree[/red]")


def _figure(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)
