"""``chanlite stats --watch``'s parts: rates, parsing, rendering and one refresh."""

from __future__ import annotations

import argparse
import io

import pytest

from chanlite import LayerError, get_layer
from chanlite.stats_watch import (
    CLEAR_BELOW,
    CLEAR_LINE,
    CONNECTIONS,
    COUNTERS,
    HOME,
    LayerView,
    MetricsView,
    Reading,
    Watch,
    counter_rates,
    depth_changes,
    fetch_metrics,
    fit,
    header,
    interval_seconds,
    masked,
    metrics_url,
    parse_metrics,
    per_second,
    render,
    show,
    terminal_frame,
)

from .e2e.server import free_port

SENT = "chanlite_messages_sent_total"


def scrape(at: float, **values: float) -> Reading:
    """An endpoint's reading with ``values`` by metric name."""
    return Reading(at, values)


def test_per_second() -> None:
    assert per_second(10, 16, 2.0) == 3.0
    assert per_second(10, 4, 2.0) == -3.0
    assert per_second(1, 5, 0.0) == 0.0


def test_depth_changes_without_an_earlier_reading_have_no_rate() -> None:
    assert depth_changes(None, Reading(5.0, {"b": 2, "a": 1})) == {"a": (1, None), "b": (2, None)}


def test_depth_changes_count_missing_channels_as_empty() -> None:
    before = Reading(1.0, {"kept": 4, "emptied": 6})
    now = Reading(3.0, {"kept": 10, "new": 2})
    assert depth_changes(before, now) == {
        "emptied": (0, -3.0),
        "kept": (10, 3.0),
        "new": (2, 1.0),
    }


def test_counter_rates_sum_over_the_endpoints_read_both_times() -> None:
    before = {"a": scrape(0.0, **{SENT: 10}), "b": scrape(0.0, **{SENT: 100})}
    now = {
        "a": scrape(2.0, **{SENT: 30}),  # 10/s
        "b": scrape(4.0, **{SENT: 120}),  # 5/s
        "c": scrape(4.0, **{SENT: 999}),  # first reading: no rate yet
    }
    rates = counter_rates(before, now)
    assert rates["messages sent/s"] == 15.0
    assert rates["frames received/s"] == 0.0


def test_counter_rates_without_two_readings_are_unknown() -> None:
    rates = counter_rates({}, {"a": scrape(1.0, **{SENT: 5})})
    assert set(rates.values()) == {None}
    assert len(rates) == 4


def test_a_counter_that_went_down_counts_from_zero() -> None:
    # The process behind the endpoint restarted: 6 messages since, not -94.
    rates = counter_rates({"a": scrape(0.0, **{SENT: 100})}, {"a": scrape(2.0, **{SENT: 6})})
    assert rates["messages sent/s"] == 3.0


PROMETHEUS_TEXT = """\
# HELP chanlite_websocket_connections_open Sockets open now.
# TYPE chanlite_websocket_connections_open gauge
chanlite_websocket_connections_open 7.0
# HELP chanlite_websocket_connections_total Handshakes by outcome.
# TYPE chanlite_websocket_connections_total counter
chanlite_websocket_connections_total{outcome="accepted"} 40.0
chanlite_websocket_connections_total{outcome="rejected"} 2.0
# HELP chanlite_messages_sent_total Messages sent.
# TYPE chanlite_messages_sent_total counter
chanlite_messages_sent_total{channel="websocket.receive"} 12.0
chanlite_messages_sent_total{channel="reply"} 30.0
chanlite_messages_sent_created{channel="reply"} 1.7e9
"""


def test_parse_metrics_sums_labels_and_reads_absent_metrics_as_zero() -> None:
    values = parse_metrics(PROMETHEUS_TEXT)
    assert values[CONNECTIONS] == 7.0  # not the counter of handshakes
    assert values[SENT] == 42.0
    assert values["chanlite_messages_received_total"] == 0.0
    assert set(values) == {CONNECTIONS, *COUNTERS}


def test_parse_metrics_refuses_other_text() -> None:
    with pytest.raises(ValueError):
        parse_metrics("<html><body>Not found</body></html>\n")


def test_fetch_metrics_from_nowhere_says_why() -> None:
    with pytest.raises(OSError, match="refused"):
        fetch_metrics(f"http://127.0.0.1:{free_port()}/metrics")


def test_masked_hides_passwords_only() -> None:
    assert masked("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert masked("redis://me:s3cret@a/0,redis://me:other@b/0") == (
        "redis://me:***@a/0,redis://me:***@b/0"
    )
    assert masked("redis://127.0.0.1:6379/0?prefix=x") == "redis://127.0.0.1:6379/0?prefix=x"


def test_header_names_time_layer_and_interval() -> None:
    line = header("redis://:pw@host:6379/0", 0.5, 0.0)
    assert line.endswith("  every 0.5s  redis://:***@host:6379/0")
    assert "pw" not in line


def test_render_the_layer_part() -> None:
    view = LayerView({"jobs": (3, 1.5), "work": (0, -2.0)}, {"room": 2})
    lines = render("top", view, None)
    assert lines[0] == "top"
    assert lines[1].split() == ["channel", "depth", "change/s"]
    assert lines[2].split() == ["jobs", "3", "+1.5"]
    assert lines[3].split() == ["work", "0", "-2.0"]
    assert lines[4].split() == ["total", "(2", "channels)", "3", "-0.5"]
    assert lines[5].split() == ["group", "members"]
    assert lines[6].split() == ["room", "2"]
    assert lines[7].split() == ["total", "(1", "group)", "2"]
    assert len(lines) == 8


def test_render_a_first_refresh_without_rates() -> None:
    lines = render("top", LayerView({"jobs": (3, None)}, {}), None)
    assert lines[2].split() == ["jobs", "3", "-"]
    assert lines[3].split() == ["total", "(1", "channel)", "3", "-"]
    assert lines[-1].split() == ["total", "(0", "groups)", "0"]


def test_render_a_failing_layer_as_one_line() -> None:
    lines = render("top", LayerView(error="layer error: Redis at h:1/0: down"), None)
    assert lines == ["top", "layer error: Redis at h:1/0: down"]


def test_render_the_metrics_part() -> None:
    rates = {"frames received/s": 2.25, "messages sent/s": None}
    errors = {"http://u:pw@far:9/metrics": "timed out"}
    lines = render("top", LayerView(), MetricsView(12.0, rates, errors))
    assert lines[-4].split() == ["open", "connections", "12"]
    assert lines[-3].split() == ["frames", "received/s", "2.2"]
    assert lines[-2].split() == ["messages", "sent/s", "-"]
    assert lines[-1] == "cannot read http://u:***@far:9/metrics: timed out"


def test_render_metrics_that_no_endpoint_answered() -> None:
    lines = render("top", LayerView(), MetricsView(None, {}, {}))
    assert lines[-1].split() == ["open", "connections", "-"]


def test_fit_cuts_lines_and_rows() -> None:
    assert fit(["abcdef", "xy"], 4, 5) == ["abcd", "xy"]
    assert fit([str(n) for n in range(10)], 80, 4) == ["0", "1", "2", "... 7 more lines"]


def test_terminal_frame_redraws_from_the_top_left_corner() -> None:
    frame = terminal_frame(["one", "two"])
    assert frame == f"{HOME}one{CLEAR_LINE}\ntwo{CLEAR_LINE}{CLEAR_BELOW}"


def test_show_writes_plain_lines_where_there_is_no_terminal() -> None:
    out = io.StringIO()
    show(out, ["one", "two"])
    show(out, ["three"])
    assert out.getvalue() == "one\ntwo\n\nthree\n\n"


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", ""])
def test_interval_must_be_a_positive_number(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="positive number of seconds"):
        interval_seconds(value)


def test_interval_takes_fractions() -> None:
    assert interval_seconds("0.2") == 0.2


def test_metrics_url_must_be_http() -> None:
    assert metrics_url("http://127.0.0.1:9100/metrics") == "http://127.0.0.1:9100/metrics"
    with pytest.raises(argparse.ArgumentTypeError, match="http:// or https://"):
        metrics_url("127.0.0.1:9100/metrics")


@pytest.mark.anyio
async def test_watch_counts_depth_changes_from_the_last_refresh() -> None:
    layer = get_layer("memory://")
    watch = Watch(layer, [])
    await layer.send("jobs", {"n": 1})
    await layer.group_add("room", "someone!1")
    first, metrics = await watch.refresh()
    assert first.channels == {"jobs": (1, None)}
    assert first.groups == {"room": 1}
    assert metrics == MetricsView(None, dict.fromkeys(metrics.rates), {})
    for n in range(3):
        await layer.send("jobs", {"n": n})
    second, _ = await watch.refresh()
    depth, rate = second.channels["jobs"]
    assert depth == 4
    assert rate is not None and rate > 0
    await layer.aclose()


@pytest.mark.anyio
async def test_a_layer_that_fails_at_the_first_refresh_raises() -> None:
    layer = get_layer("memory://")
    await layer.aclose()
    with pytest.raises(LayerError):
        await Watch(layer, []).refresh()


@pytest.mark.anyio
async def test_a_layer_that_fails_later_is_a_line_of_the_view() -> None:
    layer = get_layer("memory://")
    watch = Watch(layer, [])
    await watch.refresh()
    await layer.aclose()
    view, _ = await watch.refresh()
    assert view.error is not None and view.error.startswith("layer error: ")
    assert render("top", view, None) == ["top", view.error]


@pytest.mark.anyio
async def test_an_endpoint_that_fails_is_named_with_its_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    layer = get_layer("memory://")
    _, metrics = await Watch(layer, [url, url]).refresh()  # asked once
    assert metrics.connections is None
    assert list(metrics.errors) == [url]
    assert "refused" in metrics.errors[url]
    await layer.aclose()
