"""Jobs, Dask clusters and scoring servers on Kubernetes (the Helm chart's mode): docs/kubernetes.md."""

from notebench.executor.backends.kubernetes.endpoints import KubernetesEndpointBackend
from notebench.executor.backends.kubernetes.jobs import KubernetesBackend

__all__ = ["KubernetesBackend", "KubernetesEndpointBackend"]
