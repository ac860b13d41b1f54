"""The transactional checks on tiny literal histories: a passing and a failing one each, with the
witness they print (which process, record, transaction, events)."""

from __future__ import annotations

from typing import Any

from harness.checkers import (
    aborted_read,
    check,
    exactly_once_processing,
    hanging_transaction,
    intermediate_read,
    lost_write,
    lso_above_hw,
    lso_past_open_transaction,
    poll_skip,
    torn_transaction,
)
from harness.history import HistoryBuilder

RC = "read_committed"


def send(topic: str, partition: int, value: str, offset: int | None) -> list[Any]:
    return ["send", topic, partition, None, value, offset]


def poll(*records: tuple[str, int, int, str]) -> list[Any]:
    return ["poll", [[t, p, o, None, v] for t, p, o, v in records]]


def offsets(group: str, *positions: tuple[str, int, int]) -> list[Any]:
    return ["offsets", group, [list(x) for x in positions]]


# --- aborted-read (G1a) --------------------------------------------------------------------------

def _aborted_then_read(isolation_level: str | None, how: str = "abort") -> tuple[HistoryBuilder, int, int]:
    b = HistoryBuilder()
    if how == "abort":
        t = b.txn("tp0", [send("t", 0, "a", 0)], outcome="abort")
    else:
        t = b.begin_txn("tp0", [send("t", 0, "a", 0)])
        b.end_txn(t, [send("t", 0, "a", 0)], type_="fail", error="INVALID_PRODUCER_EPOCH")
    read = b.poll("c0", [("t", 0, 0, "a")], isolation_level=isolation_level)
    return b, t, read


def test_a_read_committed_read_of_an_aborted_transaction_is_an_aborted_read() -> None:
    for how in ("abort", "fail"):
        b, t, read = _aborted_then_read(RC, how)
        result = aborted_read(b.history())
        assert result.count == 1, how
        a = result.anomalies[0]
        assert a.events == (t, t + 1, read)
        assert "c0 (read_committed) read 'a' at t-0@0" in a.explanation
        assert f"tp0's transaction #{t}" in a.explanation
        assert ("failed" if how == "fail" else "aborted") in a.explanation


def test_a_read_uncommitted_reader_may_read_aborted_records() -> None:
    b, _t, _read = _aborted_then_read(None)
    assert aborted_read(b.history()).valid
    b, _t, _read = _aborted_then_read("read_uncommitted")
    assert aborted_read(b.history()).valid


def test_a_consume_transform_produce_poll_of_an_aborted_record_is_an_aborted_read() -> None:
    b = HistoryBuilder()
    t = b.txn("tp0", [send("in", 0, "a", 0)], outcome="abort")
    ctp = b.txn("ctp0", [poll(("in", 0, 0, "a")), send("out", 0, "b", 0), offsets("g", ("in", 0, 1))],
                isolation_level=RC)
    result = aborted_read(b.history())
    assert result.count == 1 and result.anomalies[0].events == (t, t + 1, ctp, ctp + 1)
    assert "ctp0 (read_committed) read 'a'" in result.anomalies[0].explanation


def test_a_committed_transaction_read_by_read_committed_readers_is_fine() -> None:
    b = HistoryBuilder()
    b.txn("tp0", [send("t", 0, "a", 0)])
    b.poll("c0", [("t", 0, 0, "a")], isolation_level=RC)
    h = b.history()
    assert aborted_read(h).valid and intermediate_read(h).valid


# --- G1b -----------------------------------------------------------------------------------------

def _read_during(end_invoked: int) -> tuple[HistoryBuilder, int, int, int]:
    """tp0's transaction is open (events at 1000, 2000, ...) while c0 reads its record (done at 3000)."""
    b = HistoryBuilder()
    t = b.begin_txn("tp0", [send("t", 0, "a", 0)])
    read = b.poll("c0", [("t", 0, 0, "a")], isolation_level=RC)
    done = b.end_txn(t, [send("t", 0, "a", 0)], end_invoked=end_invoked)
    return b, t, read, done


def test_a_read_that_returned_before_its_transaction_asked_to_commit_is_g1b() -> None:
    b, t, read, done = _read_during(end_invoked=3_500)
    result = intermediate_read(b.history())
    assert result.count == 1
    a = result.anomalies[0]
    assert a.name == "G1b" and a.events == (t, read, done)
    assert "c0 (read_committed) read 'a' at t-0@0, written by tp0's transaction #0 (committed)" in a.explanation
    assert "before that transaction asked to end" in a.explanation


def test_a_read_after_the_commit_was_asked_for_is_fine() -> None:
    b, _t, _read, _done = _read_during(end_invoked=2_500)  # the commit may have landed before the read
    assert intermediate_read(b.history()).valid


def test_a_transaction_that_polls_its_own_write_reads_uncommitted_data() -> None:
    b = HistoryBuilder()
    t = b.txn("ctp0", [send("t", 0, "a", 0), poll(("t", 0, 0, "a"))], isolation_level=RC)
    result = intermediate_read(b.history())
    assert result.count == 1 and result.anomalies[0].events == (t, t + 1)
    assert "its own transaction polled it" in result.anomalies[0].explanation


def test_a_cycle_of_reads_alone_proves_an_intermediate_read_without_timing() -> None:
    """T1 read T2's write and T2 read T1's: each polled before committing, so one read was early."""
    b = HistoryBuilder()
    t1 = b.begin_txn("ctp1", [send("t", 0, "a", 0), poll(("t", 1, 0, "b"))], isolation_level=RC)
    t2 = b.begin_txn("ctp2", [send("t", 1, "b", 0), poll(("t", 0, 0, "a"))], isolation_level=RC)
    d1 = b.end_txn(t1, [send("t", 0, "a", 0), poll(("t", 1, 0, "b"))])
    d2 = b.end_txn(t2, [send("t", 1, "b", 0), poll(("t", 0, 0, "a"))])
    result = intermediate_read(b.history())
    assert result.count == 1
    a = result.anomalies[0]
    assert a.events == (t1, t2, d1, d2)
    assert "G1c cycle of 2 committed transactions (component of 2), of wr edges alone" in a.explanation
    assert f"T{t1} (ctp1) -wr-> T{t2} (ctp2) (T{t2} polled T{t1}'s 'a' at t-0@0)" in a.explanation


# --- torn-transaction ----------------------------------------------------------------------------

def _torn(read_b: bool, isolation_level: str | None = RC) -> tuple[HistoryBuilder, dict[str, int]]:
    """tp0 commits 'a' (t-0@0) and 'b' (t-1@1) between plain records at t-1@0 and t-1@2."""
    b = HistoryBuilder()
    b.send("p0", "t", "p", partition=1, offset=0)
    t = b.txn("tp0", [send("t", 0, "a", 0), send("t", 1, "b", 1)])
    b.send("p0", "t", "q", partition=1, offset=2)
    saw_a = b.poll("c0", [("t", 0, 0, "a")], isolation_level=isolation_level)
    before = b.poll("c0", [("t", 1, 0, "p")], isolation_level=isolation_level)
    middle = [("t", 1, 1, "b")] if read_b else []
    after = b.poll("c0", [*middle, ("t", 1, 2, "q")], isolation_level=isolation_level)
    return b, {"txn": t, "saw_a": saw_a, "before": before, "after": after}


def test_a_reader_that_saw_part_of_a_transaction_and_read_past_the_rest_saw_it_torn() -> None:
    b, ev = _torn(read_b=False)
    result = torn_transaction(b.history())
    assert result.count == 1
    a = result.anomalies[0]
    assert a.events == (ev["txn"], ev["txn"] + 1, ev["saw_a"], ev["before"], ev["after"])
    assert ("c0 (read_committed) saw 1 of tp0's transaction #2 (committed)'s records (e.g. 'a') but read t-1 "
            "from offset 0 to 2 without its 'b' at offset 1") in a.explanation


def test_a_reader_that_saw_all_of_a_transaction_saw_it_whole() -> None:
    b, _ev = _torn(read_b=True)
    h = b.history()
    assert torn_transaction(h).valid and lost_write(h).valid and poll_skip(h).valid


def test_read_uncommitted_readers_are_not_judged_for_torn_transactions() -> None:
    b, _ev = _torn(read_b=False, isolation_level=None)
    assert torn_transaction(b.history()).valid


def test_a_committed_transactional_record_read_through_by_nobody_seeing_it_is_a_lost_write() -> None:
    """Without any of the transaction's records, the reader saw no tear: the record is lost."""
    b = HistoryBuilder()
    b.send("p0", "t", "p", offset=0)
    t = b.txn("tp0", [send("t", 0, "b", 1)])
    b.send("p0", "t", "q", offset=2)
    b.poll("c0", [("t", 0, 0, "p"), ("t", 0, 2, "q")], isolation_level=RC)
    h = b.history()
    assert torn_transaction(h).valid
    lost = lost_write(h)
    assert lost.count == 1 and {t, t + 1} <= set(lost.anomalies[0].events)
    assert "value 'b' was acknowledged at t-0 offset 1" in lost.anomalies[0].explanation


def test_a_read_committed_reader_skips_aborted_records_without_a_poll_skip() -> None:
    """An aborted record someone read (uncommitted) is no skip for a read_committed reader."""
    b = HistoryBuilder()
    b.send("p0", "t", "p", offset=0)
    b.txn("tp0", [send("t", 0, "x", 1)], outcome="abort")
    b.send("p0", "t", "q", offset=2)
    b.poll("ru", [("t", 0, 0, "p"), ("t", 0, 1, "x"), ("t", 0, 2, "q")])
    b.poll("rc", [("t", 0, 0, "p"), ("t", 0, 2, "q")], isolation_level=RC)
    assert poll_skip(b.history()).valid
    b.poll("ru2", [("t", 0, 0, "p"), ("t", 0, 2, "q")])  # a read_uncommitted reader must see it
    assert poll_skip(b.history()).count == 1


# --- lso-above-hw, lso-past-open-transaction ------------------------------------------------------

def _sample(b: HistoryBuilder, lso: int, hw: int, partition: int = 0) -> int:
    return b.observe("observer", "stable-offsets", topic="t", partition=partition, high_watermark=hw,
                     last_stable_offset=lso)


def test_an_lso_above_the_high_watermark_in_one_answer() -> None:
    b = HistoryBuilder()
    _sample(b, 4, 4)
    bad = _sample(b, 5, 4)
    polled = b.poll("c0", [], high_watermarks=[("t", 1, 2)], last_stable_offsets=[("t", 1, 3)], isolation_level=RC)
    result = lso_above_hw(b.history())
    assert [a.events for a in result.anomalies] == [(bad,), (polled,)]
    assert "observer was told t-0 has last stable offset 5 and high watermark 4 in one answer" in \
        result.anomalies[0].explanation
    assert result.anomalies[0].attribution is not None


def test_without_lso_observations_the_lso_checks_say_why_they_skip() -> None:
    b = HistoryBuilder()
    b.txn("tp0", [send("t", 0, "a", 0)])
    h = b.history()
    for result in (lso_above_hw(h), lso_past_open_transaction(h), hanging_transaction(h)):
        assert result.skipped is not None and "stable-offsets" in result.skipped


def _open_while_sampled(lso: int) -> tuple[HistoryBuilder, int, int]:
    b = HistoryBuilder()
    b.send("p0", "t", "p", offset=0)
    t = b.begin_txn("tp0", [send("t", 0, "a", 1), send("t", 0, "b", 2)])
    sample = _sample(b, lso, 3)  # recorded at 4000
    b.end_txn(t, [send("t", 0, "a", 1), send("t", 0, "b", 2)], end_invoked=4_500)
    return b, t, sample


def test_an_lso_past_a_transaction_that_had_not_asked_to_commit() -> None:
    b, t, sample = _open_while_sampled(lso=2)
    result = lso_past_open_transaction(b.history())
    assert result.count == 1 and result.anomalies[0].events == (t, sample, t + 2)
    assert "t-0 has last stable offset 2, past offset 1 of tp0's transaction #2 (committed)" in \
        result.anomalies[0].explanation


def test_an_lso_held_at_an_open_transaction_is_fine() -> None:
    b, _t, _sample_event = _open_while_sampled(lso=1)
    assert lso_past_open_transaction(b.history()).valid


# --- hanging-transaction -------------------------------------------------------------------------

def _stuck(seconds: int, moves: bool = False) -> HistoryBuilder:
    """An LSO of 4 under a high watermark of 9 sampled every second; timeout 1 s, checks every 1 s."""
    b = HistoryBuilder({"transaction.timeout.ms": 1000,
                        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000}, step=1_000_000_000)
    for i in range(seconds + 1):
        _sample(b, 9 if moves and i == seconds // 2 else 4, 9)
    return b


def test_an_lso_stuck_below_the_high_watermark_past_the_timeout_is_a_hanging_transaction() -> None:
    result = hanging_transaction(_stuck(3).history())
    assert result.count == 1 and result.anomalies[0].events == (0, 3)
    assert ("t-0's last stable offset stayed at 4, below the high watermark, for 3.0 s, longer than "
            "transaction.timeout.ms=1000") in result.anomalies[0].explanation


def test_an_lso_that_moves_or_is_stuck_briefly_is_no_hanging_transaction() -> None:
    assert hanging_transaction(_stuck(2).history()).valid  # 2 s is not more than 1 s + 1 s
    assert hanging_transaction(_stuck(4, moves=True).history()).valid


# --- exactly-once-processing ---------------------------------------------------------------------

def _inputs(b: HistoryBuilder, n: int) -> None:
    for i in range(n):
        b.send("p0", "in", f"i{i}", offset=i)


def _ctp(b: HistoryBuilder, process: str, inputs: list[int], commit: int, outcome: str = "commit") -> int:
    records = [("in", 0, o, f"i{o}") for o in inputs]
    outputs = [send("out", 0, f"{process}-{outcome}-{o}", None) for o in inputs]
    return b.txn(process, [poll(*records), *outputs, offsets("g", ("in", 0, commit))], outcome=outcome,
                 isolation_level=RC)


def test_each_input_processed_once_by_committed_transactions_passes() -> None:
    b = HistoryBuilder()
    _inputs(b, 4)
    _ctp(b, "ctp0", [0, 1], 2)
    _ctp(b, "ctp1", [2, 3], 4, outcome="abort")  # taken back: processed again below
    _ctp(b, "ctp1", [2, 3], 4)
    assert exactly_once_processing(b.history()).valid


def test_an_input_processed_by_two_committed_transactions_is_duplicated_output() -> None:
    b = HistoryBuilder()
    _inputs(b, 4)
    t0 = _ctp(b, "ctp0", [0, 1], 2)
    t1 = _ctp(b, "ctp1", [1, 2, 3], 4)
    result = exactly_once_processing(b.history())
    assert result.count == 1
    a = result.anomalies[0]
    assert a.events == (t0, t0 + 1, t1, t1 + 1)
    assert "group 'g': in-0@1 was processed by 2 committed transactions" in a.explanation


def test_an_input_below_the_committed_offset_that_nobody_processed_is_lost_output() -> None:
    b = HistoryBuilder()
    _inputs(b, 4)
    _ctp(b, "ctp0", [0, 1], 2)
    t1 = _ctp(b, "ctp1", [3], 4)
    result = exactly_once_processing(b.history())
    assert result.count == 1
    a = result.anomalies[0]
    assert a.events == (5, t1, t1 + 1)  # the send that put 'i2' there, and the committing transaction
    assert "in-0@2 ('i2') is below the committed offset 4 (ctp1's transaction" in a.explanation
    assert "its output is lost" in a.explanation


def test_an_input_whose_offsets_were_not_committed_past_it() -> None:
    b = HistoryBuilder()
    _inputs(b, 2)
    t = _ctp(b, "ctp0", [0, 1], 1)
    result = exactly_once_processing(b.history())
    assert result.count == 1 and result.anomalies[0].events == (t, t + 1)
    assert "processed 'i1' at in-0@1 but committed offset 1" in result.anomalies[0].explanation


def test_an_aborted_input_skipped_by_consume_transform_produce_is_not_lost() -> None:
    b = HistoryBuilder()
    _inputs(b, 2)
    b.txn("tp0", [send("in", 0, "x", 2)], outcome="abort")
    b.send("p0", "in", "i3", offset=3)
    b.poll("ru", [("in", 0, 2, "x")])  # someone saw it, so the offset is known to hold a record
    _ctp(b, "ctp0", [0, 1, 3], 4)
    assert exactly_once_processing(b.history()).valid


# --- all together --------------------------------------------------------------------------------

def test_a_valid_transactional_history_passes_every_claimed_check() -> None:
    b = HistoryBuilder()
    _inputs(b, 2)
    _ctp(b, "ctp0", [0, 1], 2)
    b.poll("c0", [("out", 0, 0, "ctp0-commit-0"), ("out", 0, 1, "ctp0-commit-1")], isolation_level=RC)
    _sample(b, 2, 2)
    report = check(b.history())
    assert report.valid, report.anomalies
