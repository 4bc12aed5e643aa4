"""What Notebench's services share when they check a caller with the hub (jupyterhub.services.auth).

Import-light: the MLflow front reads it before it starts MLflow.
"""

# HubAuth keeps the hub's answer about a token (or OAuth cookie) this long, so a token revoked at
# the hub still works on a service until its cached answer expires. JupyterHub's default is 300 s;
# the executor (its API and invocations) and the MLflow front use this bound instead, at the cost
# of one more hub request per token and period.
TOKEN_CACHE_SECONDS = 60
