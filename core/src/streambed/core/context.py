"""What a component factory learns about the node that builds it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NodeContext"]


@dataclass(frozen=True, slots=True)
class NodeContext:
    data_dir: Path
    """Where local state lives when a local medium is used (``broker.data_dir``)."""
    node_id: int = 1
    node_epoch: int = 0
    """Grows on every start of the node (start time in ms); WALs fence stale owners with it."""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("streambed"))

    def local_path(self, *parts: str) -> Path:
        """A path under ``data_dir``, created on demand by the caller."""
        return self.data_dir.joinpath(*parts)
