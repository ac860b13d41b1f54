"""report.html in a real headless Chromium: a real campaign's page lays out, needs nothing from
the network, draws every chart, and its anomaly marks lead to their witnesses; the screenshot
is kept beside the report (``report.png``, the whole page; ``report-top.png``, its first 2400
pixels: the charts and tables before the witnesses).

The campaign is unclean-loss on the reference cluster (a replica cut off, the others killed, the
lagging one elected): the page then has fault windows, leader changes, a high watermark going
back, and lost writes with their witnesses. Set ``KCONFORM_KEEP_SCREENSHOT=FILE`` to copy the
top screenshot out of the test's temporary folder (docs/images/report.png was taken that way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from chaos.campaign import CampaignSettings, run_campaign
from tests.browser import browser_or_skip, open_page
from tests.chaos.conftest import require_toxiproxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

LAYOUT = """
const box = e => e.getBoundingClientRect();
const total = (svg, css) => [...svg.querySelectorAll(css)].reduce((a, x) => a + box(x).width, 0);
return {
  title: document.title,
  fetched: performance.getEntriesByType('resource').map(e => e.name),
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  charts: [...document.querySelectorAll('svg')].map(s => [s.getAttribute('aria-label'), box(s).width, box(s).height]),
  partitions: [...document.querySelectorAll('svg.partition')].map(s => ({
    name: s.dataset.partition, width: box(s).width,
    leader: total(s, '.leader-segment rect'), isr: total(s, '.isr-segment rect'),
    hw: s.querySelector('polyline.high-watermark') ? s.querySelector('polyline.high-watermark').points.length : 0,
    back: s.querySelectorAll('.hw-regression').length})),
  marks: [...document.querySelectorAll('a[href^="#w-"]')].map(a => a.getAttribute('href')),
};
"""

WITNESS_IN_VIEW = """
const target = document.getElementById(location.hash.slice(1));
if (!target) return null;
const r = target.getBoundingClientRect();
return {hash: location.hash, top: r.top, height: r.height, viewport: window.innerHeight,
        open: target.closest('details').open};
"""


def test_the_report_of_a_real_campaign_renders_in_a_headless_browser(tmp_path: Path) -> None:
    browser_or_skip()
    require_toxiproxy()
    result = run_campaign(CampaignSettings(duration=13.0, seed=103, campaign="unclean-loss",
                                           overrides={"unclean.leader.election.enable": "true"}),
                          tmp_path / "report")
    r = result.results
    assert r.hazards.get("lost-write", 0) > 0, r.anomalies
    page_file = result.report_dir / "report.html"
    shot = result.report_dir / "report.png"
    top = result.report_dir / "report-top.png"  # the charts, before the witnesses
    with open_page(page_file) as page:
        layout = page.script(LAYOUT)
        assert layout["fetched"] == [], "the page loaded something: it must be self-contained"
        assert layout["overflow"] <= 0, "the page is wider than the window"
        assert "unclean-loss" not in layout["title"] and f"seed {r.seed}" in layout["title"]
        labels = [label for label, _w, _h in layout["charts"]]
        assert labels[:3] == ["operations per second", "faults", "latency"], labels
        assert all(w > 1000 and h > 100 for label, w, h in layout["charts"] if label != "faults"), layout["charts"]
        assert {p["name"] for p in layout["partitions"]} == set(r.partitions)
        for p in layout["partitions"]:
            # The leader and ISR bands cover the plot from the first sample on; the line is drawn.
            assert p["leader"] > 0.9 * 1020 and p["isr"] > 0.9 * 1020 and p["hw"] >= 2, p
        assert any(p["back"] for p in layout["partitions"]), "the unclean election's step back is not marked"
        assert layout["marks"], "no anomaly mark links to a witness"
        page.screenshot(shot, width=1200)
        page.screenshot(top, width=1200, height=2400)
        # A mark is a link: following it shows the witness, even inside a folded anomaly.
        last = layout["marks"][-1]
        page.click(f'a[href="{last}"] path')
        seen = page.script(WITNESS_IN_VIEW)
        assert seen is not None and seen["hash"] == last, seen
        assert seen["open"] and seen["height"] > 0 and 0 <= seen["top"] < seen["viewport"], seen
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 1100 and height > 2000, (width, height)
    keep = os.environ.get("KCONFORM_KEEP_SCREENSHOT")
    if keep:
        shutil.copyfile(top, keep)
