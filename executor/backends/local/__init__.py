"""Jobs and scoring servers as local processes, each as its owner's OS account (the default)."""

from notebench.executor.backends.local.endpoints import LocalEndpointBackend
from notebench.executor.backends.local.jobs import LocalBackend

__all__ = ["LocalBackend", "LocalEndpointBackend"]
