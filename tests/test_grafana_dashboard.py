"""The Grafana dashboard shipped in ``docs/`` is a dashboard, and it queries only
metrics that ``docs/observability.md`` documents, in the form those names take."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
DASHBOARD = DOCS / "grafana-dashboard.json"
PAGE = DOCS / "observability.md"

#: The header row of every metric table on the page.
METRIC_TABLE_HEADER = "| name | type | labels | meaning |"
#: A chanlite metric name in a PromQL expression.
METRIC_IN_EXPR = re.compile(r"\bchanlite_[a-z0-9_]*[a-z0-9]\b")
#: The series Prometheus serves for a histogram named ``NAME``: ``NAME_bucket`` and so on.
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
#: The name each metric type must have: counters end in _total, histograms (all
#: durations) in _seconds, and a gauge is neither.
NAME_BY_TYPE = {
    "counter": re.compile(r"chanlite_[a-z][a-z0-9_]*_total"),
    "gauge": re.compile(r"chanlite_[a-z][a-z0-9_]*(?<!_total)(?<!_seconds)"),
    "histogram": re.compile(r"chanlite_[a-z][a-z0-9_]*_seconds"),
}
#: The labels column: an en dash for none, else backquoted label names.
LABELS = re.compile("\u2013" r"|`[a-z_]+`(, `[a-z_]+`)*")


def documented_metrics() -> dict[str, tuple[str, str]]:
    """Each row of the page's metric tables: name -> (type, labels cell)."""
    metrics: dict[str, tuple[str, str]] = {}
    in_table = False
    for line in PAGE.read_text().splitlines():
        if line.strip() == METRIC_TABLE_HEADER:
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert len(cells) == 4, f"a metric row without four cells: {line}"
        name = cells[0].strip("`")
        assert name not in metrics, f"{name} is documented twice"
        metrics[name] = (cells[1], cells[2])
    return metrics


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, rows' nested panels included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


DOCUMENTED = documented_metrics()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_file_is_a_dashboard_with_panels(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == "chanlite"
    assert dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    graphs = [panel for panel in panels(dashboard) if panel["type"] != "row"]
    assert graphs
    for panel in graphs:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert all(target["expr"] for target in panel["targets"]), panel["title"]


def test_the_page_documents_metrics() -> None:
    """Guards the other tests against a page whose tables the parser no longer finds."""
    assert "chanlite_websocket_connections_open" in DOCUMENTED
    assert len(DOCUMENTED) >= 20


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_each_documented_metric_has_the_form_of_its_type(name: str) -> None:
    kind, labels = DOCUMENTED[name]
    assert kind in NAME_BY_TYPE, f"{name} has type {kind!r}"
    assert NAME_BY_TYPE[kind].fullmatch(name), f"{name} is not named as a {kind}"
    assert LABELS.fullmatch(labels), f"{name} has labels {labels!r}"


def test_the_dashboard_queries_only_documented_metrics(dashboard: dict[str, Any]) -> None:
    queried = expressions(dashboard)
    assert queried
    undocumented = [
        (title, name)
        for title, expr in queried
        for name in METRIC_IN_EXPR.findall(expr)
        if not is_documented(name)
    ]
    assert not undocumented, f"panels query metrics that {PAGE.name} does not list: {undocumented}"


def is_documented(name: str) -> bool:
    """A documented metric, or one series of a documented histogram."""
    if name in DOCUMENTED:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and DOCUMENTED.get(base, ("",))[0] == "histogram":
            return True
    return False
