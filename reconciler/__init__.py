"""reconciler: declarative desired-state reconciler for AWS AMI sharing."""

from __future__ import annotations

from .core.errors import InputError, ReconcilerError
from .core.manifest import Manifest, parse_manifest
from .shell.inputs import load_manifest

__version__ = "0.1.0"

__all__ = ["InputError", "Manifest", "ReconcilerError", "__version__", "load_manifest",
           "parse_manifest"]
