"""deploy/: the Grafana dashboard and the alert rules load, and every metric they name exists in
worker/observability/metrics.py (promtool is not available here, so this is the check we can make)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from worker.observability import metrics as m

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC = re.compile(r"\bsigingest_[a-z0-9_]+")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_the_alerts_name_is_declared() -> None:
    exprs = dashboard_exprs() + [r["expr"] for r in alert_rules()]
    named = {name for expr in exprs for name in METRIC.findall(expr)}
    assert named, "expected metric names in deploy/"
    assert named - m.SERIES == set()


def test_the_dashboard_has_the_panels_an_operator_wants_first() -> None:
    titles = [p["title"] for p in json.loads((DEPLOY / "grafana-dashboard.json").read_text())["panels"]]
    for wanted in ("Accepted vs persisted", "Lag", "Rejects by reason", "Batch duration"):
        assert any(t.startswith(wanted) for t in titles), wanted


def test_alerts_cover_lag_over_a_minute_dead_letters_and_intake_503s() -> None:
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    assert exprs["SigingestLagHigh"] == f"max({m.QUEUE_LAG}) > 60"
    assert exprs["SigingestDeadLetters"] == f"max({m.QUEUE_DEAD_LETTERS}) > 0"
    assert 'status="503"' in exprs["SigingestIntake503"] and m.INTAKE_REQUESTS in exprs["SigingestIntake503"]
    assert all({"alert", "expr", "for", "annotations"} <= r.keys() for r in alert_rules())


def test_every_declared_metric_has_a_comment_and_follows_the_naming_conventions() -> None:
    source = Path(m.__file__).read_text().splitlines()
    for name in (*m.COUNTERS, *m.HISTOGRAMS, *m.GAUGES):
        line = next(i for i, text in enumerate(source) if f'= "{name}"' in text)
        assert source[line - 1].lstrip().startswith("#"), f"{name} needs a comment"
        assert name.startswith("sigingest_")
    assert all(n.endswith("_total") for n in m.COUNTERS)
    assert not any(n.endswith("_total") for n in (*m.HISTOGRAMS, *m.GAUGES))
