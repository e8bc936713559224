"""streambed.core: the shared-storage stream engine, its interfaces and the plugin host.

``core`` never imports ``streambed.broker``: another Python broker can embed it.
"""

from streambed.core._version import __version__
from streambed.core.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
