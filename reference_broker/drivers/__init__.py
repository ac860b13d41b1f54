"""The reference broker's I/O: everything that touches sockets, the clock or the event loop.

The broker's logic (:mod:`reference_broker.broker`, replication, groups, producers, the
controller core, metadata, the log's decisions) takes requests, replies and the time as inputs
(docs/architecture.md, "The sans-I/O core"). The drivers here feed it:

* :mod:`~reference_broker.drivers.node_server` — the asyncio server both node kinds share
  (frames off sockets, the clock, the periodic work);
* :mod:`~reference_broker.drivers.broker_server` — a broker node;
* :mod:`~reference_broker.drivers.controller_server` — a controller-only node;
* :mod:`~reference_broker.drivers.remote_controller` — a broker's channel to a remote controller;
* :mod:`~reference_broker.drivers.fetcher` — the replica fetcher loop of followers;
* :mod:`~reference_broker.drivers.wire_client` — the Kafka wire client the last two use.

An import-linter contract (``pyproject.toml``) forbids the logic packages to import this one.
"""
