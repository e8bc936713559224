"""Controller and auto-scale actuator interfaces (implemented by the cluster issues)."""

from streambed.core.controllers.api import Actuator, Controller

__all__ = ["Actuator", "Controller"]
