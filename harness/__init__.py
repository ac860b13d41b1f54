"""The conformance harness: targets, clients, histories, checkers and the ``kconform`` CLI."""
