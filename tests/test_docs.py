"""The user documentation covers what the code offers."""

from __future__ import annotations

from pathlib import Path

from reference_broker.config import BROKER_KEYS, TOPIC_KEYS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_configuration_key_is_documented() -> None:
    """docs/configuration.md has a row for every broker and topic key the broker accepts."""
    text = (DOCS / "configuration.md").read_text()
    missing = [key for key in [*BROKER_KEYS, *TOPIC_KEYS] if f"| `{key}` |" not in text]
    assert not missing, f"undocumented keys: {missing}"


def test_code_cites_principles_and_files_that_docs_architecture_has() -> None:
    """Every "docs/architecture.md, principle N" in the code names a principle the page has, and
    every file path the page names exists (the page must not drift from the tree)."""
    import re

    root = DOCS.parent
    text = (DOCS / "architecture.md").read_text()
    principles = {int(n) for n in re.findall(r"^(\d+)\. \*\*", text, re.M)}
    assert principles == set(range(1, 12))
    # The project's own packages only: a walk of the whole tree also enters .venv, and
    # directories other tests create and remove meanwhile (.hypothesis/tmp).
    packages = ("specs", "harness", "chaos", "reference_broker", "launch", "tests", "benchmarks", "scripts")
    for path in [p for package in packages for p in (root / package).glob("**/*.py")]:
        for n in re.findall(r"docs/architecture\.md,\s+principle (\d+)", path.read_text()):
            assert int(n) in principles, (path, n)
    for named in re.findall(r"`((?:specs|harness|chaos|reference_broker|tests)/[\w/]+\.py)`", text):
        assert (root / named).exists(), named
