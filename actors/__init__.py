"""Per-item actors, one module per pipeline. Importing this package sets up the
broker and registers every pipeline, which is what ``dramatiq actors`` needs.

Every module of the package is imported, in name order: adding a pipeline is
adding a module here, with no list to keep.
"""

import importlib
import pkgutil

from backlane.app import setup

broker = setup()

# Registration needs the broker first.
MODULES = [
    importlib.import_module(f"{__name__}.{info.name}")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name)
    if not info.name.startswith("_")
]

__all__ = ["MODULES", "broker"]
