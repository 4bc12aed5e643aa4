"""The Kubernetes objects the executor's backends make, built by pure functions (no cluster needed).

As kubespawner's objects.py does: every manifest is a plain dict made here from its inputs, so
tests validate and inspect exactly what the backends send. ``EXECUTOR_RULES`` lists the API calls
the backends make (the chart renders the executor's Role from it; docs/kubernetes.md).
"""

from __future__ import annotations

# Exactly the verbs executor/backends/kubernetes.py and kubernetes_endpoints.py call.
EXECUTOR_RULES = [
    # Notebook jobs: made, watched, found again after a restart, deleted (with their pods).
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "get", "list"]},
    # The pods of jobs and model servers: found by label for their logs and why they fail.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    # A job's upload token (owned by its Job: deleted with it).
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    # A distributed job's pods may talk to each other (owned by the Job).
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create"]},
    # A distributed job's Dask cluster (dask-kubernetes operator; owned by the Job, deleted at its end).
    {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskclusters"], "verbs": ["create", "delete"]},
    # Model servers: a Deployment and a Service per model version.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "delete", "get", "patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete", "patch"]},
]
