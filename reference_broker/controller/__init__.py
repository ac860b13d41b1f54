"""The cluster controller: broker liveness, topic placement, leader election, ISR changes.

Sans-I/O like the rest of the core: :class:`~reference_broker.controller.core.ControllerCore`
turns requests and clock ticks into metadata records; a driver appends them to the metadata log
and answers the brokers.
"""
