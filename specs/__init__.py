"""The executable model of Kafka semantics (pure Python, no I/O, nothing else of ours imported).

- `specs.types`: distinct types for offsets, partitions, node ids, generations, members.
- `specs.log`: one partition log: contiguous offsets, log start offset, high watermark, LSO.
- `specs.produce`: what a send can have done (definite success / failure / indeterminate) per
  acks, idempotence and retries, and what survives broker failures.
- `specs.offsets`: Fetch and ListOffsets answers, consumer positions and committed offsets.
- `specs.groups`: generations, range and round-robin assignment, fencing of stale commits.
- `specs.delivery`: at-most-once, at-least-once and exactly-once as predicates.
- `specs.transactions`: transactions (KIP-98, KIP-447): outcomes, what read_committed readers may
  see, the LSO's rules, hanging transactions, and the dependency cycles Kafka allows.

Each rule cites the Kafka documentation section or KIP it comes from. Where Kafka's behaviour
is nondeterministic, the model returns the set of allowed outcomes.
"""
