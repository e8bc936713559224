"""Kafka request handlers, one module per family of APIs; each exposes ``handlers(services)``
(see :mod:`streambed.broker.server.context` for the contract)."""
