"""``kconform check``: check a recorded history offline for anomalies and delivery guarantees."""

from __future__ import annotations

import gc
import json
import sys
from typing import Any

import attrs
import click

from harness.checkers import CHECKS, GUARANTEES, Report, check
from harness.checkers.judgement import HELD, VIOLATED_BY_CLIENT, VIOLATED_UNATTRIBUTED, Verdict, judge
from harness.history import HistoryError, load_history
from harness.history._gc import no_gc
from harness.history.load import History
from harness.run_configuration import ConfigurationError, configuration, from_meta, parse_stated
from harness.verdicts import colour_verdict
from specs.claims import Claims, claims_for
from specs.transactions import KAFKA_ALLOWS

EXIT_VALID, EXIT_ANOMALIES, EXIT_UNUSABLE, EXIT_CLIENT_FAULT = 0, 1, 2, 3


def _split_checks(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None or value.strip() in ("", "all"):
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHECKS and n not in GUARANTEES]
    if unknown:
        raise click.BadParameter(
            f"unknown check(s) {', '.join(unknown)}; known: {', '.join([*CHECKS, *GUARANTEES])}")
    return names


def _event_line(history: History, index: int) -> str:
    """One event; its time in seconds since the history's first event, as in the chaos report."""
    e = history.raw[index]
    ref = f" (completes #{e['invoke']})" if "invoke" in e else ""
    t = (e["time"] - history.raw[0]["time"]) / 1e9
    return (f"#{index} {t:.3f}s {e['process']} {e['type']} {e['f']}{ref} "
            f"{json.dumps(e['value'], separators=(',', ':'))}")


@attrs.frozen
class Judged:
    """A report judged against a configuration: where the configuration came from, what it
    claims, and the verdict."""

    source: str
    claims: Claims
    verdict: Verdict


def _counted(report: Report) -> dict[str, int]:
    """The anomalies found that count against the broker when no configuration is known: all but
    those Kafka never promises against (specs.transactions.KAFKA_ALLOWS)."""
    return {name: n for name, n in report.anomalies.items() if name not in KAFKA_ALLOWS}


def _word(name: str, count: int, verdict: Verdict | None) -> str:
    """pass, FAIL or (judged against a configuration that does not claim it, or never claimed)
    hazard."""
    if not count:
        return "pass"
    if verdict is None and name in KAFKA_ALLOWS:
        return "hazard"
    if verdict is not None and any(p.split("[")[0] == name and n for p, n in verdict.hazards.items()) \
            and not any(p.split("[")[0] == name for p in (*verdict.violations, *verdict.unjudged)):
        return "hazard"
    return "FAIL"


def _print_report(history: History, report: Report, witnesses: int, unjudged: list[str],
                  judged: Judged | None) -> None:
    """The table, the witnesses, and the verdict: INVALID, CLIENT FAULT, NOT JUDGED (a check
    asked for by name could not run), or VALID (with the hazards found, when judged against a
    configuration)."""
    verdict = judged.verdict if judged is not None else None
    width = max(len(r.check) for r in report.results)
    click.echo(f"{'check':<{width}}  {'result':<7}  count")
    for r in report.results:
        if r.skipped is not None:
            click.echo(f"{r.check:<{width}}  {'skip':<7}  -      {r.skipped}")
        else:
            click.echo(f"{r.check:<{width}}  {_word(r.check, r.count, verdict):<7}  {r.count}")
    for r in report.results:
        if not r.anomalies:
            continue
        click.echo(f"\n{r.check}: {r.count} anomal{'y' if r.count == 1 else 'ies'}"
                   + (f", first {witnesses}:" if r.count > witnesses else ":"))
        for a in r.anomalies[:witnesses]:
            click.echo(f"  - {a.explanation}")
            if a.attribution is not None:
                known = f"; known: {a.attribution.known}" if a.attribution.known else ""
                click.echo(f"    whose fault: {a.attribution.blame.value} ({a.attribution.cause}): "
                           f"{a.attribution.detail}{known}")
            for idx in a.events:
                click.echo(f"      {_event_line(history, idx)}")
    click.echo("")
    if judged is None:
        for name, n in report.anomalies.items():
            if name in KAFKA_ALLOWS:
                click.echo(f"  hazard {name}: {n}, never claimed: {KAFKA_ALLOWS[name]}")
        counted = _counted(report)
        if counted:
            click.echo("configuration: not recorded in the history, none stated: every anomaly counts against the "
                       "broker (state it with --config, e.g. --config acks=1)")
            counts = ", ".join(f"{name}: {n}" for name, n in counted.items())
            click.echo(colour_verdict(f"INVALID: {sum(counted.values())} anomalies ({counts})"))
            return
    else:
        click.echo(f"configuration: {judged.source}")
        for prop, n in judged.verdict.hazards.items():
            if n:
                click.echo(f"  hazard {prop}: {n}, not claimed: {judged.claims.not_claimed[prop]}")
        broken = {**judged.verdict.violations, **judged.verdict.unjudged}
        if broken:
            counts = ", ".join(f"{p}: {n}" for p, n in broken.items())
            word = "CLIENT FAULT" if _outcome(judged.verdict) == VIOLATED_BY_CLIENT else "INVALID"
            by = {VIOLATED_BY_CLIENT: "by the client, not the broker"}.get(_outcome(judged.verdict), "")
            click.echo(colour_verdict(f"{word}: claimed guarantees violated{' ' + by if by else ''} ({counts})"))
            return
    if unjudged:
        click.echo(colour_verdict(f"NOT JUDGED: {', '.join(unjudged)} could not run on this history (the reason is "
                                  f"above); the other checks found no violation in {len(history)} events"))
    elif judged is None and not report.valid:
        click.echo(colour_verdict(f"VALID: no anomaly Kafka promises against in {len(history)} events; "
                                  "unclaimed hazards found (above)"))
    elif judged is not None and any(judged.verdict.hazards.values()):
        click.echo(colour_verdict(f"VALID: every guarantee this configuration claims held in {len(history)} events; "
                                  "unclaimed hazards found (above)"))
    else:
        click.echo(colour_verdict(f"VALID: no anomalies in {len(history)} events"))


def _outcome(verdict: Verdict) -> str:
    """The verdict's outcome, where an anomaly no claim names (e.g. a guarantee checked for a
    group the configuration does not know) counts as unattributed."""
    return verdict.outcome if not verdict.unjudged else VIOLATED_UNATTRIBUTED


def _judged(history: History, report: Report, stated: dict[str, str]) -> Judged | None:
    """The report judged against the stated or recorded configuration; None when neither."""
    recorded = from_meta(history.meta)
    if not stated and not recorded:
        return None
    faults = [e["value"]["fault"] for e in history.raw
              if e["f"] == "fault" and e["type"] == "invoke" and e["value"]["action"] == "start"]
    # A history with transactions (or LSO samples) is judged on them, whatever its header says.
    transactional = bool(history.index.txns or history.index.stable_offsets)
    config = configuration({**recorded, **stated},
                           {**history.meta, "transactions": history.meta.get("transactions") is True or transactional},
                           faults)
    source = config.describe() + (" (stated with --config" + (", the rest from the history" if recorded else "")
                                  + ")" if stated else " (from the history's header)")
    claims = claims_for(config)
    return Judged(source, claims, judge(report, claims))


@click.command("check")
@click.argument("history_file", metavar="HISTORY.jsonl", type=click.Path(dir_okay=False))
@click.option("--guarantee", "guarantees", multiple=True, type=click.Choice(list(GUARANTEES)),
              help="Also check this delivery guarantee for every consumer group (repeatable).")
@click.option("--checks", callback=_split_checks, metavar="NAME,NAME",
              help="Run only these checks (comma-separated; default: every anomaly check).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON instead of a table.")
@click.option("--witnesses", default=3, show_default=True, type=click.IntRange(min=0),
              help="How many anomalies per check to print with their events.")
@click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
              help="The configuration the run had, in Kafka's names (repeatable): acks, enable.idempotence, "
                   "replication.factor, min.insync.replicas, unclean.leader.election.enable. An anomaly it does "
                   "not promise against is a hazard, not a failure. Default: what the history's header records "
                   "(chaos campaigns record it), else every anomaly fails.")
def check_command(history_file: str, guarantees: tuple[str, ...], checks: list[str] | None,
                  as_json: bool, witnesses: int, config_items: tuple[str, ...]) -> None:
    """Check a recorded history (JSONL, docs/history-format.md) for anomalies.

    Runs every anomaly check by default: inconsistent-offsets, duplicate, lost-write, unseen,
    aborted-read, poll-skip, nonmonotonic-poll, nonmonotonic-send, read-uncommitted,
    committed-offset-regression, group-split-brain, and for transactions G1b, torn-transaction,
    lso-above-hw, lso-past-open-transaction, hanging-transaction, exactly-once-processing, G0,
    G1c, G-single, and for a Kafka Streams workload streams-exactly-once (definitions:
    docs/anomalies.md). Prints a table of checks with anomaly
    counts, then the first anomalies of each failing check with the events that witness them.
    G0, G1c and G-single are always hazards: Kafka never promises against them.

    Judged like a chaos campaign when the configuration is known (--config, or the history's
    header): an anomaly the configuration does not promise against (a lost write with acks=1)
    is a hazard, reported but not a failure.

    Exit status: 0 when no anomaly (or only hazards) was found, 1 when anomalies were found, 2
    when the history is unusable (the message names the file, line and field), the stated
    configuration is invalid, or a check you asked for by name cannot be evaluated on it (e.g.
    unseen without a final drain), 3 when the only violations are the client's (attributed from
    the log, docs/anomalies.md).

    A history that ends in a half-written line (the run crashed while writing) is checked
    without that line, with a warning.

    \b
    Example:
      kconform check run/history.jsonl --guarantee at-least-once
      kconform check run/history.jsonl --checks lost-write,duplicate --json
      kconform check run/history.jsonl --config acks=1 --config enable.idempotence=false
    """
    try:
        stated = parse_stated(config_items)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    # The cyclic GC would rescan the millions of loaded objects again and again (a full pass
    # costs ~0.4 s per 100k operations); JSON data has no cycles, reference counting frees it.
    with no_gc():
        try:
            history = load_history(history_file)
            report = check(history, guarantees=guarantees, checks=checks)
        except HistoryError as exc:
            click.echo(f"error: unusable history: {exc}", err=True)
            sys.exit(EXIT_UNUSABLE)
        gc.freeze()  # nothing loaded needs the cyclic collector, even at interpreter exit
    try:
        judged = _judged(history, report, stated)
    except ConfigurationError as exc:
        click.echo(f"error: the configuration cannot be judged by: {exc}", err=True)
        sys.exit(EXIT_UNUSABLE)
    if history.warning:
        click.echo(f"warning: {history.warning}", err=True)
    asked = set(checks or ()) | set(guarantees)
    unusable = {name: why for name, why in report.skipped.items() if name in asked}
    if as_json:
        out: dict[str, Any] = {"history": history_file, "events": len(history), "warning": history.warning,
                               **report.to_json()}
        if judged is not None:
            v = judged.verdict
            out["judged"] = {"configuration": judged.source, "outcome": _outcome(v),
                             "violations": {**v.violations, **v.unjudged},
                             "hazards": {p: n for p, n in v.hazards.items() if n},
                             "claims": {"claimed": judged.claims.claimed, "not_claimed": judged.claims.not_claimed}}
        click.echo(json.dumps(out, indent=2))
    else:
        _print_report(history, report, witnesses, sorted(unusable), judged)
    if unusable:
        for name, why in unusable.items():
            click.echo(f"error: the check {name} you asked for cannot run on this history: {why}", err=True)
        sys.exit(EXIT_UNUSABLE)
    if judged is None:
        sys.exit(EXIT_ANOMALIES if _counted(report) else EXIT_VALID)
    sys.exit({HELD: EXIT_VALID, VIOLATED_BY_CLIENT: EXIT_CLIENT_FAULT}.get(_outcome(judged.verdict), EXIT_ANOMALIES))
