"""The history format and anomaly docs cover what the code offers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.checkers import CHECKS, GUARANTEES
from harness.history import FORMAT_VERSION, OPERATIONS, parse_history
from harness.history.format import SCHEMAS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_operation_and_field_is_documented() -> None:
    """docs/history-format.md has a section per operation naming each of its value fields."""
    text = (DOCS / "history-format.md").read_text()
    assert '{"error": string}' in text  # documented once for every fail / info completion
    for f in OPERATIONS:
        heading = re.search(rf"^### [^\n]*`{re.escape(f)}`.*?(?=^### |\Z)", text, re.M | re.S)
        assert heading, f"no section for operation {f}"
        for schema in SCHEMAS[f].values():
            for name, _check in schema.required + schema.optional:
                if name == "error":
                    continue
                section = heading.group(0)
                assert f"`{name}`" in section or f'"{name}"' in section, f"{f}: field {name} not documented"


def test_the_documented_example_history_is_valid() -> None:
    """The example at the top of docs/history-format.md loads without error."""
    text = (DOCS / "history-format.md").read_text()
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block
    history = parse_history([line + "\n" for line in block.group(1).splitlines()])
    assert len(history) == 8 and history.raw[7]["type"] == "info"
    assert json.loads(block.group(1).splitlines()[0])["kconform-history"] == FORMAT_VERSION


def test_every_documented_history_example_is_valid() -> None:
    """Each JSON example history in docs/history-format.md (the transaction one too) loads, at the
    version this kconform writes."""
    text = (DOCS / "history-format.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        lines = [line + "\n" for line in block.splitlines()]
        assert json.loads(lines[0])["kconform-history"] == FORMAT_VERSION
        assert len(parse_history(lines)) == len(lines) - 1


def test_every_check_is_defined_in_the_anomaly_docs() -> None:
    """docs/anomalies.md defines every anomaly check and every guarantee."""
    text = (DOCS / "anomalies.md").read_text()
    for name in CHECKS:
        assert f"### {name}" in text, name
    for name in GUARANTEES:
        assert f"`{name}`" in text, name
