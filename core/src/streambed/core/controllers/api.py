"""Interfaces of controllers (auto-balance, auto-scale, ...) and auto-scale actuators.

Controllers split deciding from doing (``docs/architecture.md``): a pure planner turns a cluster
snapshot into actions; the controller runs the planner on a timer and hands actions to an executor.
Only the lifecycle is fixed here; the snapshot and action types arrive with the cluster issue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["Actuator", "Controller"]


@runtime_checkable
class Controller(Protocol):
    name: str

    async def start(self) -> None:
        """Begin the controller's decide/act loop (called when the broker has started)."""
        ...

    async def stop(self) -> None:
        """Stop the loop; an action in progress is finished or rolled back, never left halfway."""
        ...


@runtime_checkable
class Actuator(Protocol):
    """Carries out an auto-scale decision: local processes, Kubernetes, a cloud scaling group."""

    async def scale_out(self, count: int) -> Sequence[int]:
        """Start ``count`` brokers; return their node ids once they registered."""
        ...

    async def scale_in(self, node_ids: Sequence[int]) -> None:
        """Stop the given brokers (already drained by the caller)."""
        ...
