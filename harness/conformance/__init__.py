"""The conformance suite: named, selectable checks of Kafka's rules, run against a target.

- `harness.conformance.registry`: the `CHECKS` table and the `check` decorator.
- `harness.conformance.protocol_checks`: deterministic wire-level checks (exact error codes).
- `harness.conformance.client_checks`: workloads through real client libraries, judged by the
  history checkers.
- `harness.conformance.transaction_checks`: transactions at the wire level (KIP-98).
- `harness.conformance.other_checks`: the state machines, restarts, replication.
- `harness.conformance.runner`: `run_suite`, the table, results.json and JUnit XML.

Importing this package registers every check.
"""

from harness.conformance import (  # noqa: F401  (registration)
    client_checks,
    other_checks,
    protocol_checks,
    transaction_checks,
)
from harness.conformance.context import CheckContext, CheckFailed, CheckSkipped, expect
from harness.conformance.registry import CHECKS, Check, check
from harness.conformance.runner import (
    FAIL,
    PASS,
    SKIP,
    CheckOutcome,
    SuiteResult,
    junit_xml,
    run_suite,
    table,
    write_reports,
)

__all__ = [
    "CHECKS",
    "FAIL",
    "PASS",
    "SKIP",
    "Check",
    "CheckContext",
    "CheckFailed",
    "CheckOutcome",
    "CheckSkipped",
    "SuiteResult",
    "check",
    "expect",
    "junit_xml",
    "run_suite",
    "table",
    "write_reports",
]
