"""Hypothesis state machines that drive a real broker and compare every answer with `specs`.

- `LogMachine` (`harness.stateful.log_machine`): topics, produce with acks 0/1/all and raw
  idempotent batches, fetch, list offsets, delete records.
- `GroupMachine` (`harness.stateful.group_machine`): joins, leaves, rebalances, heartbeats,
  commits with generation fencing, committed offsets.
- `TransactionMachine` (`harness.stateful.txn_machine`): transactional producers, their zombies
  and plain writers on shared partitions; markers, last stable offsets, read_committed reads.

`TestLogMachine`, `TestGroupMachine` and `TestTransactionMachine` are plain ``unittest.TestCase`` classes, so pytest (and
HypoFuzz) run them by importing them into a test module; the broker they drive comes from the
pytest plugin's ``--kconform-target`` or ``KCONFORM_TARGET`` / ``KCONFORM_BOOTSTRAP``
(`harness.stateful.target`), and their budget from ``HYPOTHESIS_PROFILE``
(`harness.stateful.settings`). `harness.stateful.runner.run_machine` runs one against a given
target with a seed (what `kconform conform` does).
"""

from harness.stateful.base import KafkaMachine, ModelMismatch
from harness.stateful.group_machine import GroupMachine
from harness.stateful.log_machine import LogMachine
from harness.stateful.runner import MachineRun, run_machine
from harness.stateful.settings import machine_settings
from harness.stateful.txn_machine import TransactionMachine

TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = machine_settings()
TestGroupMachine = GroupMachine.TestCase
TestGroupMachine.settings = machine_settings()
TestTransactionMachine = TransactionMachine.TestCase
TestTransactionMachine.settings = machine_settings()

MACHINES: dict[str, type[KafkaMachine]] = {"log": LogMachine, "groups": GroupMachine,
                                           "transactions": TransactionMachine}

__all__ = [
    "MACHINES",
    "GroupMachine",
    "KafkaMachine",
    "LogMachine",
    "MachineRun",
    "ModelMismatch",
    "TestGroupMachine",
    "TestLogMachine",
    "TestTransactionMachine",
    "TransactionMachine",
    "machine_settings",
    "run_machine",
]
