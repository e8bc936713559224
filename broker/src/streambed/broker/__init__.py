"""streambed.broker: the Kafka-compatible broker on the streambed stream engine."""

from streambed.core import __version__

__all__ = ["__version__"]
