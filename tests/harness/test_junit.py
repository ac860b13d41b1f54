"""The one JUnit writer: counts, properties, failures with their text, skips with the reason."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.junit import Case, Failure, Suite, junit_xml


def test_a_suite_counts_its_failures_and_skips_and_keeps_what_each_case_says() -> None:
    suite = Suite("kconform x", "2026-12-07T10:00:00+00:00", 1.5, {"seed": "7"}, [
        Case("k.a", "passes", 0.25),
        Case("k.a", "fails", failure=Failure("violated-by-broker", "2 x lost-write", "witness\nreplay: cmd")),
        Case("k.b", "skips", skipped="not claimed (acks=1)"),
    ])
    root = ET.fromstring(junit_xml(suite))
    [element] = root.findall("testsuite")
    assert (element.get("tests"), element.get("failures"), element.get("skipped"), element.get("time")) == \
        ("3", "1", "1", "1.500")
    [prop] = element.iter("property")
    assert (prop.get("name"), prop.get("value")) == ("seed", "7")
    cases = {c.get("name"): c for c in element.findall("testcase")}
    assert cases["passes"].get("time") == "0.250" and list(cases["passes"]) == []
    failure = cases["fails"].find("failure")
    assert failure is not None and failure.get("type") == "violated-by-broker" and failure.text == "witness\nreplay: cmd"
    skipped = cases["skips"].find("skipped")
    assert skipped is not None and skipped.get("message") == "not claimed (acks=1)"
    assert cases["skips"].get("time") is None
