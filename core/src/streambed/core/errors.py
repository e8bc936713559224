"""One error taxonomy for every medium.

Plugins translate their SDK errors into these at the edge (see ``docs/writing-plugins.md``); the
engine and the broker only ever see these types, so retry and fencing logic is written once.
"""

from __future__ import annotations

__all__ = [
    "Closed",
    "ConditionFailed",
    "ConfigError",
    "DataError",
    "Fenced",
    "NotFound",
    "PermissionDenied",
    "PluginError",
    "StreambedError",
    "Unavailable",
    "WalFull",
]


class StreambedError(Exception):
    """Base class of every error streambed raises on purpose."""


class Fenced(StreambedError):
    """A newer owner (higher epoch) holds the resource; the caller must stop writing to it."""


class Closed(StreambedError):
    """The component was closed; no further operations are accepted."""


class Unavailable(StreambedError):
    """A medium cannot be reached or refused the request; retrying later may succeed."""


class WalFull(Unavailable):
    """The WAL has no free capacity: data must be uploaded and trimmed before more is appended."""


class DataError(StreambedError):
    """Stored or received data is corrupt (bad checksum, bad length, bad format)."""


class NotFound(StreambedError):
    """The named object, stream or key does not exist."""


class PermissionDenied(StreambedError):
    """Credentials were refused. Not retried: the message names the endpoint and the key id."""


class ConditionFailed(StreambedError):
    """A conditional write lost: the object/key already exists or changed since it was read."""


class ConfigError(StreambedError):
    """A configuration is invalid. The message names the file, the key path and what is allowed."""


class PluginError(StreambedError):
    """A plugin failed to import or to register. The message names the plugin and the cause."""
