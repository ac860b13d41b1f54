"""Checkers of what each producer was told.

- nonmonotonic-send: a producer's acknowledged sends to one partition, in the order it invoked
  them, got offsets that do not increase (a later send landed at or below an earlier one).
  Kafka orders one producer's records per partition with idempotence, or with
  `max.in.flight.requests.per.connection=1` (specs.produce.may_reorder).
"""

from __future__ import annotations

from harness.checkers._common import checker, tp_name
from harness.checkers.result import Anomaly, CheckResult
from harness.history.load import History


@checker
def nonmonotonic_send(history: History) -> CheckResult:
    """A producer's later send to a partition was acknowledged at a lower (or equal) offset."""
    anomalies = []
    for (proc, t, p), sends in history.index.producer_sends.items():
        if any(sends[i][0] > sends[i + 1][0] for i in range(len(sends) - 1)):
            sends = sorted(sends)
        for (i1, o1, d1), (i2, o2, d2) in zip(sends, sends[1:]):
            if o2 <= o1:
                anomalies.append(Anomaly(
                    "nonmonotonic-send",
                    f"{proc} sent to {tp_name(t, p)} event {i1} (acked at offset {o1}) before event {i2} "
                    f"(acked at offset {o2})",
                    (i1, d1, i2, d2)))
    anomalies.sort(key=lambda a: a.events)
    return CheckResult("nonmonotonic-send", tuple(anomalies))
