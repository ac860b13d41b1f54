"""Produce outcomes: what each answer lets a producer conclude, and what the log may hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specs.produce import (
    Acks,
    Copies,
    DurabilityConfig,
    Outcome,
    ProducerConfig,
    ProducerConfigError,
    allowed_copies,
    classify,
    disallowed_copies,
    may_reorder,
    tolerated_broker_failures,
)

IDEMPOTENT = ProducerConfig()
PLAIN = ProducerConfig(acks=Acks.ALL, enable_idempotence=False, retries=3, max_in_flight=5)
NO_RETRIES = ProducerConfig(acks=Acks.LEADER, enable_idempotence=False, retries=0, max_in_flight=1)


def test_an_acknowledgement_is_success_except_with_acks_0() -> None:
    """acks=0 tells the producer nothing, so even 'delivered' is indeterminate."""
    assert classify(None, IDEMPOTENT) is Outcome.SUCCESS
    assert classify("DUPLICATE_SEQUENCE_NUMBER", IDEMPOTENT) is Outcome.SUCCESS
    blind = ProducerConfig(acks=Acks.NONE, enable_idempotence=False)
    assert classify(None, blind) is Outcome.INDETERMINATE


@pytest.mark.parametrize("error", ["REQUEST_TIMED_OUT", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "TIMEOUT", "DISCONNECTED"])
def test_timeouts_and_after_append_errors_are_indeterminate(error: str) -> None:
    """A timeout or a post-append error never counts as a definite failure."""
    assert classify(error, NO_RETRIES) is Outcome.INDETERMINATE


def test_a_rejection_before_append_is_definite_only_without_retries() -> None:
    """NOT_ENOUGH_REPLICAS is definite after one attempt, indeterminate after retries."""
    assert classify("NOT_ENOUGH_REPLICAS", NO_RETRIES) is Outcome.FAILURE
    assert classify("NOT_ENOUGH_REPLICAS", PLAIN, attempts=1) is Outcome.FAILURE
    assert classify("NOT_ENOUGH_REPLICAS", PLAIN) is Outcome.INDETERMINATE
    assert classify("MESSAGE_TOO_LARGE", PLAIN) is Outcome.FAILURE
    assert classify("SOMETHING_NEW", NO_RETRIES) is Outcome.INDETERMINATE


def test_copies_allowed_per_outcome_and_idempotence() -> None:
    """Idempotence bounds copies to one; a non-idempotent retrying producer may duplicate."""
    assert allowed_copies(Outcome.FAILURE, PLAIN) == Copies(0, 0)
    assert allowed_copies(Outcome.SUCCESS, IDEMPOTENT) == Copies(1, 1)
    assert allowed_copies(Outcome.INDETERMINATE, IDEMPOTENT) == Copies(0, 1)
    assert allowed_copies(Outcome.SUCCESS, PLAIN).allows(2)
    assert not allowed_copies(Outcome.SUCCESS, IDEMPOTENT).allows(2)
    assert allowed_copies(Outcome.SUCCESS, NO_RETRIES) == Copies(1, 1)


def test_reordering_needs_retries_in_flight_and_no_idempotence() -> None:
    """Only non-idempotent producers with retries and several requests in flight may reorder."""
    assert may_reorder(PLAIN)
    assert not may_reorder(IDEMPOTENT)
    assert not may_reorder(NO_RETRIES)


def test_kafka_refuses_idempotence_with_unsafe_settings() -> None:
    """Idempotence requires acks=all, retries > 0 and at most 5 requests in flight."""
    with pytest.raises(ProducerConfigError, match="acks=all"):
        ProducerConfig(acks=Acks.LEADER)
    with pytest.raises(ProducerConfigError, match="retries"):
        ProducerConfig(retries=0)
    with pytest.raises(ProducerConfigError, match="in.flight"):
        ProducerConfig(max_in_flight=6)


def test_only_the_safe_configuration_tolerates_a_broker_failure() -> None:
    """acks=all + min.insync.replicas=2 + clean elections tolerate one failure; others none."""
    assert tolerated_broker_failures(DurabilityConfig()) == 1
    assert tolerated_broker_failures(DurabilityConfig(acks=Acks.LEADER)) == 0
    assert tolerated_broker_failures(DurabilityConfig(unclean_leader_election_enable=True)) == 0
    assert tolerated_broker_failures(DurabilityConfig(min_insync_replicas=1)) == 0


@st.composite
def _run(draw: st.DrawFn) -> tuple[ProducerConfig, dict[str, Outcome], list[str]]:
    """A producer config, the outcome of each send, and a log each outcome allows."""
    config = draw(st.sampled_from([IDEMPOTENT, PLAIN, NO_RETRIES]))
    outcomes = draw(st.dictionaries(st.text("abc", min_size=1, max_size=3), st.sampled_from(list(Outcome)), max_size=8))
    log: list[str] = []
    for value, outcome in outcomes.items():
        allowed = allowed_copies(outcome, config)
        high = allowed.high if allowed.high is not None else allowed.low + 3
        log += [value] * draw(st.integers(allowed.low, max(allowed.low, high)))
    return config, outcomes, draw(st.permutations(log))


@given(_run())
def test_every_log_the_outcomes_allow_is_accepted(run: tuple[ProducerConfig, dict[str, Outcome], list[str]]) -> None:
    """A log built within the allowed copies has no disallowed value."""
    config, outcomes, log = run
    assert disallowed_copies(outcomes, log, config) == {}


def test_disallowed_copies_names_each_offending_value() -> None:
    """An acked value missing, a failed value present, a duplicate under idempotence, an unknown value."""
    sent = {"ok": Outcome.SUCCESS, "gone": Outcome.SUCCESS, "failed": Outcome.FAILURE, "maybe": Outcome.INDETERMINATE}
    log = ["ok", "ok", "failed", "stranger"]
    assert disallowed_copies(sent, log, IDEMPOTENT) == {"ok": 2, "gone": 0, "failed": 1, "stranger": 1}
    assert disallowed_copies(sent, log, PLAIN) == {"gone": 0, "failed": 1, "stranger": 1}
