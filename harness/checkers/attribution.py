"""Whose fault an anomaly is: the broker's or the client's, read from the log itself.

A verdict about a broker is only worth something if it never rests on a client's bug. The log
carries the evidence: every record batch holds the producer id, producer epoch and base
sequence its producer gave it, and the batch CRC covers them, so a broker cannot have changed
them. A precise read (`harness.precise_read`, the campaign's final drain) records them with
each poll (`batches`, docs/history-format.md), and each record's own sequence is the batch's
base sequence plus the record's offset delta. For one value found at several offsets:

- the same (producer id, epoch, sequence) at each: the producer sent one batch, the broker
  appended it twice: **broker** (idempotence is the broker's duty to drop a resent batch);
- the same producer id under another epoch: the client resent the record after bumping its
  epoch (librdkafka does this after OUT_OF_ORDER_SEQUENCE_NUMBER on pipelined requests, #4953),
  which no broker can recognise as a resend: **client**;
- the same producer id and epoch, another sequence: the client renumbered a resend: **client**;
- another producer id, or no producer id (a non-idempotent producer): the record was sent
  again under an identity idempotence does not cover (a restarted client or application, or a
  plain retry): **client**;
- an offset with no recorded batch identity (an old history, a read by a client library only):
  **unattributed**.

Other anomalies are attributed by what their evidence is: an offset holding two records, an
acknowledged write missing from the log, a record served past the high watermark are the
broker's own answers (**broker**); a delivery guarantee broken by a duplicate in the log takes
the duplicate's attribution; the rest (a consumer skipping or repeating records, a group given
a record twice at one offset, ...) may be the consumer client's doing as much as the broker's
and stay **unattributed**. docs/anomalies.md lists the rule of each anomaly.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from harness.history.load import History

TPO = tuple[str, int, int]
Identity = tuple[int, int, int]  # producer id, producer epoch, sequence


class Blame(enum.Enum):
    """Which component the evidence shows at fault."""

    BROKER = "broker"
    CLIENT = "client"
    UNATTRIBUTED = "unattributed"


@attrs.frozen
class Attribution:
    """Whose fault one anomaly is, why (``cause``, a short stable code), the evidence, and the
    public report of the bug when it is a known one (docs/findings.md)."""

    blame: Blame
    cause: str
    detail: str
    known: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"blame": self.blame.value, "cause": self.cause, "detail": self.detail}
        if self.known is not None:
            out["known"] = self.known
        return out


KNOWN_CLIENT_BUGS: tuple[tuple[str, str, str], ...] = (
    ("librdkafka", "epoch-bump-resend",
     "librdkafka #4953 (https://github.com/confluentinc/librdkafka/issues/4953), see docs/findings.md"),
)
"""(text in the client's description, cause, the public report): client bugs kconform knows."""


def known_bug(client: str, cause: str) -> str | None:
    for marker, known_cause, reference in KNOWN_CLIENT_BUGS:
        if marker in client and cause == known_cause:
            return reference
    return None


BROKER_ANSWERS = {
    "inconsistent-offsets": Attribution(
        Blame.BROKER, "offset-reused", "offsets are the broker's to assign: it served or acknowledged two "
                                       "records at one offset"),
    "lost-write": Attribution(
        Blame.BROKER, "acknowledged-then-missing", "the broker acknowledged the write at an offset and its log "
                                                   "does not hold it there"),
    "unseen": Attribution(
        Blame.BROKER, "acknowledged-then-missing", "the broker acknowledged the write and the final read of "
                                                   "its log to the end did not find it"),
    "read-uncommitted": Attribution(
        Blame.BROKER, "served-past-bound", "the broker's own response served a record at or past the bound it "
                                           "reported in the same response"),
    "lso-above-hw": Attribution(
        Blame.BROKER, "served-past-bound", "the broker's own response reported a last stable offset above its "
                                           "high watermark"),
    "lso-past-open-transaction": Attribution(
        Blame.BROKER, "served-past-bound", "the broker reported a last stable offset past a record of a "
                                           "transaction its producer had not yet asked to commit"),
    "hanging-transaction": Attribution(
        Blame.BROKER, "transaction-not-timed-out", "the broker kept a transaction open past its timeout: the "
                                                   "coordinator must abort it, whatever the client does"),
}
"""Anomalies whose evidence is the broker's own answers."""

NO_EVIDENCE = Attribution(Blame.UNATTRIBUTED, "no-evidence",
                          "the history cannot tell the broker's part from the client's")


def worst(blames: Iterable[Blame]) -> Blame | None:
    """The verdict of several anomalies of one property: broker before unattributed before
    client (a property is violated by the client only when every anomaly is the client's)."""
    found = set(blames)
    for blame in (Blame.BROKER, Blame.UNATTRIBUTED, Blame.CLIENT):
        if blame in found:
            return blame
    return None


def client_of(history: History, process: str) -> str:
    """The client library (and version) a process used, from ``meta.clients`` (a restarted
    incarnation ``p0.2`` is found under ``p0``); a plain description when not recorded."""
    clients: Mapping[str, str] = history.meta.get("clients") or {}
    found = clients.get(process) or clients.get(process.split(".", 1)[0])
    return found if found else f"the client of {process} (not recorded in the history)"


class BatchIdentities:
    """The producer identity of the record at each position, from the polls' ``batches``.

    Built only for the positions asked for (anomalies are rare; the scan is one pass over the
    polls that carry batches).
    """

    def __init__(self, history: History, positions: Iterable[TPO]) -> None:
        wanted: dict[tuple[str, int], list[int]] = {}
        for t, p, o in positions:
            wanted.setdefault((t, p), []).append(o)
        for offsets in wanted.values():
            offsets.sort()
        self.found: dict[TPO, Identity] = {}
        if not wanted:
            return
        for e in history.raw:
            if e["f"] != "poll" or e["type"] != "ok":
                continue
            batches = e["value"].get("batches")
            if not batches:
                continue
            for t, p, base, last, pid, epoch, seq in batches:
                targets = wanted.get((t, p))
                if targets is None:
                    continue
                i = bisect_right(targets, base - 1)
                while i < len(targets) and targets[i] <= last:
                    o = targets[i]
                    self.found.setdefault((t, p, o), (pid, epoch, seq + (o - base) if seq >= 0 else -1))
                    i += 1

    def get(self, position: TPO) -> Identity | None:
        return self.found.get(position)


def duplicate_attribution(history: History, value: str, positions: Iterable[TPO],
                          identities: BatchIdentities) -> Attribution:
    """Whose fault it is that ``value`` sits at every one of ``positions`` (rules above)."""
    places = sorted(positions)
    ids = [identities.get(pos) for pos in places]
    where = ", ".join(f"{t}-{p}@{o}" for t, p, o in places)
    missing = [f"{t}-{p}@{o}" for (t, p, o), ident in zip(places, ids) if ident is None]
    if missing:
        return Attribution(Blame.UNATTRIBUTED, "no-batch-identity",
                           f"no precise read recorded the producer identity of {', '.join(missing)} "
                           "(the history has no batch identities there), so the broker's part cannot be "
                           "told from the client's")
    known = [ident for ident in ids if ident is not None]
    shown = "; ".join(f"{t}-{p}@{o}: producer id {i[0]}, epoch {i[1]}, sequence {i[2]}"
                      for (t, p, o), i in zip(places, known))
    w = history.index.write(value)
    client = client_of(history, w.process) if w is not None else "the producer's client"
    pids = {i[0] for i in known}
    if pids == {-1}:
        return Attribution(Blame.CLIENT, "not-idempotent",
                           f"{client} sent the record again without a producer id (not idempotent): a broker "
                           f"cannot recognise a resend ({shown})")
    if len(set(known)) == 1:
        return Attribution(Blame.BROKER, "not-deduplicated",
                           f"one batch (producer id {known[0][0]}, epoch {known[0][1]}, sequence {known[0][2]}) "
                           f"was appended at {where}: the broker failed to drop the resent batch")
    if len(pids) > 1:
        return Attribution(Blame.CLIENT, "new-producer-id",
                           f"{client} sent the record under different producer ids, which idempotence does not "
                           f"cover (a restarted client or application, or a producer id reset) ({shown})")
    epochs = {i[1] for i in known}
    if len(epochs) > 1:
        return Attribution(Blame.CLIENT, "epoch-bump-resend",
                           f"{client} resent the record after bumping its producer epoch "
                           f"({' -> '.join(str(e) for e in sorted(epochs))}) with new sequence numbers, so no "
                           f"broker can recognise the resend ({shown})", known_bug(client, "epoch-bump-resend"))
    return Attribution(Blame.CLIENT, "resequenced",
                       f"{client} resent the record under the same producer id and epoch with another "
                       f"sequence number ({shown})")
