"""Custom JupyterHub scopes of Notebench (declared by the hub's config, checked by the executor)."""

# Invoke model endpoints: users hold it for themselves, and a token can be made with only it.
ENDPOINT_INVOKE_SCOPE = "custom:notebench-endpoints:invoke"
