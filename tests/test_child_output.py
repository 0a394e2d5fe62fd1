"""Test children never write to a pipe nobody reads: a full pipe (64 KiB) blocks the writer, which
once stopped a chatty Celery worker from consuming in the middle of a scaling test."""

from __future__ import annotations

import sys

from tests.helpers import Child, stop_process


def test_a_child_printing_far_more_than_a_pipe_holds_runs_to_the_end_unread() -> None:
    script = "import sys\nfor i in range(20000): print(f'line {i:05d}', 'x' * 40)\nsys.stderr.write('done')"
    child = Child([sys.executable, "-c", script])
    assert child.wait(timeout=60) == 0  # a pipe would have blocked it after ~1,300 lines
    output = stop_process(child)
    assert output.count("\n") == 20000 and output.endswith("done")
    assert output.startswith("line 00000 ") and "line 19999 " in output
