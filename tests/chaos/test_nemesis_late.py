"""A fault that takes effect only after the workload ended is not injected: it is undone and
recorded as LATE, and the results count it among the faults that did not take effect."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chaos import nemesis as nemesis_module
from chaos.nemesis import Applied, Nemesis, _Family
from chaos.report import fault_windows
from chaos.schedule import FaultSpec
from harness.history.write import HistoryBuilder


class _SlowCrash(_Family):
    """Stands in for a consumer crash that waits for its moment (here: 0.2 s) before it acts."""

    undone: list[int] = []

    def apply(self, spec: FaultSpec, fault_id: int) -> Applied:
        time.sleep(0.2)
        return ["c0"], {}, lambda: self.undone.append(fault_id)


@pytest.mark.parametrize(("ends_in", "injected"), [(5.0, True), (0.05, False)])
def test_a_fault_that_lands_after_the_workload_is_not_injected(monkeypatch: pytest.MonkeyPatch, ends_in: float,
                                                                 injected: bool) -> None:
    monkeypatch.setitem(nemesis_module.FAMILY_OF, "consumer-crash", _SlowCrash)
    _SlowCrash.undone = []
    history = HistoryBuilder({})
    nemesis = Nemesis(env=Any, topology=Any, history=history, topic="t")  # type: ignore[arg-type]
    active = nemesis.start(FaultSpec("consumer-crash", 2.0, 2.0), 7, until=time.monotonic() + ends_in)
    windows = fault_windows(history.history())
    assert (active is not None) is injected and nemesis.injected == int(injected)
    assert [w.outcome for w in windows] == (["ok"] if injected else ["fail"])
    if not injected:
        assert (windows[0].error or "").startswith("LATE: it took effect") and _SlowCrash.undone == [7]
