"""The Kafka server: listeners and connections (``network``), partitions on engine streams
(``partitions``), and the assembly of the Kafka layer (``kafka``)."""
