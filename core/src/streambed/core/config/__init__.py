"""Configuration: the YAML model and its loader."""

from streambed.core.config.loader import ResolvedComponent, ResolvedConfig, load_config, masked_dump
from streambed.core.config.model import BrokerSection, ComponentConfig, Settings, StorageSection

__all__ = [
    "BrokerSection",
    "ComponentConfig",
    "ResolvedComponent",
    "ResolvedConfig",
    "Settings",
    "StorageSection",
    "load_config",
    "masked_dump",
]
