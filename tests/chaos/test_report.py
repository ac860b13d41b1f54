"""The campaign report, built from a small literal history: results.json, junit.xml and the
structure of report.html (plots, labelled fault windows, anomalies with their witnesses).

No browser here: the HTML is parsed, and its SVG elements are looked at by class and label.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs

from chaos.campaign import CampaignSettings, claims_for
from chaos.nemesis import PROCESS as NEMESIS
from chaos.report import write_report
from chaos.results import CampaignResults
from chaos.schedule import FaultSpec, Schedule
from chaos.workload import WorkloadSettings
from harness.checkers import check
from harness.checkers.judgement import judge
from harness.history.write import HistoryBuilder

TOPIC = "t"


def _history() -> tuple[HistoryBuilder, int]:
    """Two seconds of sends and reads; an isolate-leader fault from about 0.5 s to 1.5 s; the
    write at offset 5 is acknowledged but a consumer reads offset 4 then 6 (a lost-write)."""
    h = HistoryBuilder({"topic_configs": {"min.insync.replicas": "2"}}, step=10_000_000)  # 10 ms per event
    lost = -1
    for offset in range(10):
        if offset == 3:
            i = h.invoke(NEMESIS, "fault", action="start", fault="isolate-leader", targets=["b2"],
                         params={"partition": 0, "id": 0})
            h.ok(i)
        i = h.send("p0", TOPIC, f"p0-{offset}", partition=0, offset=offset)
        if offset == 5:
            lost = i
        if offset == 8:
            i = h.invoke(NEMESIS, "fault", action="stop", fault="isolate-leader", targets=["b2"],
                         params={"partition": 0, "id": 0})
            h.ok(i)
    h.poll("c0", [(TOPIC, 0, o, f"p0-{o}") for o in (0, 1, 2, 3, 4)])
    h.poll("c0", [(TOPIC, 0, o, f"p0-{o}") for o in (6, 7, 8, 9)])
    return h, lost


class _Collect(HTMLParser):
    """Every start tag with its attributes, in order, and the text inside each element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.stack: list[list[Any]] = []
        self.texts: list[tuple[str, dict[str, str], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        self.stack.append([tag, a, ""])

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            t, a, text = self.stack.pop()
            self.texts.append((t, a, text))
            if self.stack:
                self.stack[-1][2] += text
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.stack[-1][2] += data

    def find(self, tag: str, **attrs: str) -> list[tuple[dict[str, str], str]]:
        return [(a, text) for t, a, text in self.texts
                if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def _write(tmp_path: Path) -> tuple[CampaignResults, int]:
    builder, lost = _history()
    history = builder.history()
    settings = CampaignSettings(duration=2.0, seed=7, workload=WorkloadSettings(idempotence=False))
    schedule = Schedule((FaultSpec("isolate-leader", 0.3, 1.0, "leader", {"partition": 0}),), 2.0, 7, "test",
                        settings.to_json())
    configs = settings.topic_configs(3, True)
    report = check(history)
    claims = claims_for(settings, 3, configs, schedule, True, {})
    verdict = judge(report, claims)
    results = write_report(tmp_path, history, report, verdict, claims, schedule, settings=settings,
                           environment={"nodes": ["b1", "b2", "b3", "controller"]}, warnings=[],
                           replay="kconform chaos --replay x/schedule.json --report x-replay",
                           started=time.time(), injected=1)
    return results, lost


def test_results_json_has_the_verdict_anomalies_operations_and_faults(tmp_path: Path) -> None:
    """results.json says invalid (lost-write is claimed with acks=all), counts anomalies by
    name, operations by kind and outcome, and the fault with its window."""
    results, lost = _write(tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["valid"] is False
    assert on_disk["anomalies"]["lost-write"] == 1
    assert on_disk["violations"] == {"lost-write": 1, "poll-skip": 1}  # it read 4 then 6
    assert on_disk["operations"]["by_operation"]["send"] == {"ok": 10}
    assert on_disk["faults"]["injected"] == 1
    [window] = on_disk["faults"]["windows"]
    assert window["fault"] == "isolate-leader" and window["targets"] == ["b2"]
    assert 0 < window["start"] < window["end"]
    [witness] = on_disk["witnesses"]["lost-write"]
    assert lost in witness["events"]


def test_junit_xml_fails_the_violated_property_and_skips_unclaimed_ones(tmp_path: Path) -> None:
    """junit.xml: one testcase per property; lost-write fails with its witness, unclaimed
    properties are skipped with the reason."""
    _write(tmp_path)
    root = ET.parse(tmp_path / "junit.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    failure = cases["lost-write"].find("failure")
    assert failure is not None and "lost-write" in (failure.get("message") or "")
    assert cases["unseen"].find("failure") is None and cases["unseen"].find("skipped") is None
    skipped = cases["duplicate"].find("skipped")  # not claimed without idempotence
    assert skipped is not None and "enable.idempotence=false" in (skipped.get("message") or "")
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "2"  # lost-write and poll-skip


def test_report_html_has_plots_labelled_fault_windows_and_witnessed_anomalies(tmp_path: Path) -> None:
    """report.html: throughput and latency plots with lines for sends and reads, the fault
    window shaded on both and labelled on the timeline, the anomaly marked on the timeline and
    listed with its witnessing events, and the replay command."""
    _results, lost = _write(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    parsed = _Collect()
    parsed.feed(page)
    labels = [a.get("aria-label") for t, a in parsed.tags if t == "svg"]
    assert labels == ["operations per second", "faults", "latency"]
    assert len([a for t, a in parsed.tags if t == "polyline"]) >= 4  # sends and reads, ack and e2e latency
    shades = parsed.find("rect", **{"class": "fault-window", "data_fault": "isolate-leader"})
    assert len(shades) == 2  # one band on each plot
    assert all(text == "isolate-leader b2" for _a, text in shades)  # the band's tooltip
    bars = parsed.find("g", **{"class": "fault-bar", "data_fault": "isolate-leader"})
    assert len(bars) == 1 and "isolate-leader b2" in bars[0][1]
    # Both anomalies become visible at the same poll: one mark (each drawn mark stays clickable)
    # whose tooltip names both.
    [(mark, text)] = parsed.find("g", **{"class": "anomaly-mark"})
    assert mark["data-count"] == "2"
    assert sorted(line.split(":")[0] for line in text.splitlines() if "visible at" in line) == ["lost-write", "poll-skip"]
    [(_a, details)] = parsed.find("details", **{"class": "anomaly", "data_property": "lost-write"})
    assert "VIOLATION" in details and f"#{lost} " in details and "p0-5" in details
    assert "INVALID" in page and "kconform chaos --replay x/schedule.json" in page


def test_a_campaign_with_no_acknowledged_write_is_not_exercised_not_held() -> None:
    """No anomaly because nothing was written is no verdict on the broker: the outcome is
    not-exercised (exit 2), never held; a violation still wins over it."""
    from chaos.cli import EXIT_CODES, EXIT_SETUP
    from harness.checkers.judgement import HELD, NOT_EXERCISED, VIOLATED_BY_BROKER

    settings = CampaignSettings(duration=2.0, seed=7)
    schedule = Schedule((), 2.0, 7, "test", settings.to_json())
    claims = claims_for(settings, 3, settings.topic_configs(3, True), schedule, True, {})
    quiet = check(HistoryBuilder({}).history())
    assert judge(quiet, claims, exercised=True).outcome == HELD
    assert judge(quiet, claims, exercised=False).outcome == NOT_EXERCISED
    assert EXIT_CODES[NOT_EXERCISED] == EXIT_SETUP
    builder, _ = _history()
    assert judge(check(builder.history()), claims, exercised=False).outcome == VIOLATED_BY_BROKER


def test_results_and_page_give_latency_percentiles_and_unavailability(tmp_path: Path) -> None:
    """Percentiles per operation, overall and inside the fault window, and the stretch without
    any acknowledged write (from the last ack at about 0.2 s to the workload's end at 2 s)."""
    results, _lost = _write(tmp_path)
    assert results.latency is not None and results.unavailability is not None
    send = results.latency.overall["send"]
    assert send.count == 10 and send.p50_ms == send.p99_ms == send.max_ms == 10.0  # 10 ms a step
    [during] = results.latency.by_fault
    assert during.fault == "isolate-leader" and 0 < during.operations["send"].count < 10
    [gap] = results.unavailability.windows
    assert gap.end == 2.0 and 1.7 < gap.length_s < 1.9 and results.unavailability.longest_s == gap.length_s
    parsed = _Collect()
    parsed.feed((tmp_path / "report.html").read_text())
    rows = [text for _a, text in parsed.find("tr") if text.startswith(("whole run", "during #0"))]
    assert any(r.startswith("whole runsend10") for r in rows) and any(r.startswith("during #0") for r in rows)
    assert parsed.find("table", **{"class": "unavailability"})


def test_anomaly_marks_link_to_their_witnesses_shown_whole(tmp_path: Path) -> None:
    """Each anomaly mark on the timeline links to its witness on the page, and a witness event
    is printed whole, however long (a lost write's proof may be the last record of a long poll)."""
    from chaos.report import _event_line

    _write(tmp_path)
    parsed = _Collect()
    parsed.feed((tmp_path / "report.html").read_text())
    links = [a["href"] for t, a in parsed.tags if t == "a" and a.get("href", "").startswith("#w-")]
    ids = {a["id"] for t, a in parsed.tags if "id" in a}
    assert links and {link[1:] for link in links} <= ids and "#w-lost-write-0" in links
    h = HistoryBuilder({})
    h.poll("c0", [(TOPIC, 0, o, f"p0-{o}") for o in range(60)])
    line = _event_line(h.history(), 1, 0, whole=True)
    assert "p0-59" in line and not line.endswith("...")
    assert _event_line(h.history(), 1, 0).endswith("...")


def test_the_page_draws_each_partitions_leader_isr_and_high_watermark(tmp_path: Path) -> None:
    """Each observed partition gets its own chart: one leader segment per (leader, epoch), one
    ISR segment per ISR, a high watermark line, a mark where it went back; results.json carries
    the states. A run without observations says why there is no chart."""
    from chaos.report import render_html

    results, _lost = _write(tmp_path)
    assert results.partitions == {}
    assert "Not observed" in (tmp_path / "report.html").read_text()
    builder, _ = _history()
    for leader, epoch, isr, hw in (("b2", 0, ["b2", "b1", "b3"], 3), ("b2", 0, ["b2", "b1", "b3"], 5),
                                   (None, 1, ["b1"], None), ("b1", 2, ["b1"], 4), ("b1", 2, ["b1", "b2"], 9)):
        builder.observe("observer", "partition-state", topic=TOPIC, partition=0, leader=leader, leader_epoch=epoch,
                        isr=isr, high_watermark=hw)
    from chaos.leadership import partition_timelines

    history = builder.history()
    parsed = _Collect()
    parsed.feed(render_html(history, attrs.evolve(results, partitions=partition_timelines(history))))
    [(chart, _text)] = parsed.find("svg", **{"class": "partition", "data_partition": "t-0"})
    assert [a["data-leader"] for a, _t in parsed.find("g", **{"class": "leader-segment"})] == ["b2", "", "b1"]
    assert [a["data-isr"] for a, _t in parsed.find("g", **{"class": "isr-segment"})] == ["b2,b1,b3", "b1", "b1,b2"]
    assert parsed.find("polyline", **{"class": "high-watermark"})
    [(_a, tip)] = parsed.find("g", **{"class": "hw-regression"})
    assert "from 5 to 4" in tip
    [(_a, figures)] = [(a, t) for a, t in parsed.find("p", **{"class": "small"}) if t.startswith("leader changes")]
    assert "leader changes: 1" in figures and "ISR shrinks: 1" in figures and "went back: 1" in figures
