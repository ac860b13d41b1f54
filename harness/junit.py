"""JUnit XML, the one format every CI system shows: a suite of test cases that pass, fail or
are skipped. ``kconform conform`` writes one case per check, ``kconform chaos`` one per
property; both describe their cases here and this module writes the XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

import attrs


@attrs.frozen
class Failure:
    type: str
    message: str
    text: str = ""


@attrs.frozen
class Case:
    """One test case: passed unless it has a ``failure`` or was ``skipped`` (with the reason)."""

    classname: str
    name: str
    seconds: float | None = None
    failure: Failure | None = None
    skipped: str | None = None


@attrs.frozen
class Suite:
    name: str
    timestamp: str
    seconds: float
    properties: Mapping[str, str]
    cases: Sequence[Case]


def junit_xml(suite: Suite) -> bytes:
    """The suite as a ``<testsuites>`` document with one ``<testsuite>``."""
    element = ET.Element("testsuite", {
        "name": suite.name, "tests": str(len(suite.cases)),
        "failures": str(sum(c.failure is not None for c in suite.cases)), "errors": "0",
        "skipped": str(sum(c.skipped is not None for c in suite.cases)),
        "time": f"{suite.seconds:.3f}", "timestamp": suite.timestamp,
    })
    props = ET.SubElement(element, "properties")
    for key, value in suite.properties.items():
        ET.SubElement(props, "property", {"name": key, "value": value})
    for c in suite.cases:
        attributes = {"classname": c.classname, "name": c.name}
        if c.seconds is not None:
            attributes["time"] = f"{c.seconds:.3f}"
        case = ET.SubElement(element, "testcase", attributes)
        if c.failure is not None:
            failure = ET.SubElement(case, "failure", {"message": c.failure.message, "type": c.failure.type})
            failure.text = c.failure.text or None
        elif c.skipped is not None:
            ET.SubElement(case, "skipped", {"message": c.skipped})
    root = ET.Element("testsuites")
    root.append(element)
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


