"""Custom JupyterHub scopes of Notebench (declared by the hub's config, checked by the executor)."""

# Invoke model endpoints: users hold it for themselves, and a token can be made with only it.
ENDPOINT_INVOKE_SCOPE = "custom:notebench-endpoints:invoke"

# Append to the audit log (POST /services/executor/api/audit): held by the hub's audit reporter
# and the MLflow service only (notebench.hub.platform.audit_outbox).
AUDIT_APPEND_SCOPE = "custom:notebench-audit:append"
