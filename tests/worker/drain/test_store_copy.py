"""The store's COPY text (`copy_text`) carries every value as it is, the awkward ones included."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from worker.drain.store import ROW_COLUMNS, copy_text
from worker.pipeline.plan import Row

DB = psycopg.Connection[tuple[object, ...]]
AT = datetime(2026, 11, 29, 12, 0, 0, 123000, tzinfo=UTC)
PLAIN = Row("r1", 1, "ann@example.org", "ann@example.org", "Ann Lee", None, None, False, "ab12", AT)
AWKWARD = [
    Row("r2", 2, "x\\Ny@b.c", "back\\slash", "tab\there\nnewline\rreturn", "\\N", "c", True, None, AT),
    Row("r3", 3, "é@b.c", "é@b.c", "中文 Ünïcödé", "", "", False, "", datetime(2026, 1, 1, tzinfo=UTC)),
    Row("r\t4", 4, "a@b.c", "a@b.c", "Ann", "SW1A 1AA", "UK", True, "ip\\", AT, "fraudulent"),
]


@pytest.mark.parametrize("rows", [[PLAIN], [PLAIN, *AWKWARD], AWKWARD[1:2], [PLAIN] * 3 + AWKWARD[:1]])
def test_rows_come_back_from_postgresql_exactly_as_written(db: DB, rows: list[Row]) -> None:
    db.execute(f"CREATE TEMP TABLE copied AS SELECT {ROW_COLUMNS} FROM signatures WITH NO DATA")
    with db.cursor().copy(f"COPY copied ({ROW_COLUMNS}) FROM STDIN") as copy:
        copy.write(copy_text(rows))
    assert [Row(*r) for r in db.execute(f"SELECT {ROW_COLUMNS} FROM copied")] == rows


def test_a_usual_row_is_one_line_of_tab_separated_values() -> None:
    assert copy_text([PLAIN]) == (
        "r1\t1\tann@example.org\tann@example.org\tAnn Lee\t\\N\t\\N\tf\tab12\t"
        "2026-11-29T12:00:00.123000+00:00\tvalidated\n"
    )
