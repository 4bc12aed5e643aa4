"""What the MLflow service reports to the audit log (issue 17): model registrations, new and deleted
versions, alias moves, and permission grants and revokes, each once MLflow answered it with 2xx.

The front (front.py) recognises these requests by path (REST and ajax spellings, any API
version), keeps a copy of their small JSON bodies and of MLflow's answer (``Recorder``), and hands
the event to the service's outbox (notebench.hub.platform.audit_outbox: ``<data>/mlflow/
audit-outbox.sqlite``), which sends it to the executor's log with the service's own hub token.
What the body says is the caller's input: only known fields are kept, as strings of bounded length.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from urllib.parse import parse_qs

# Route → (method, action); permission grants and revokes are per resource type (see report()).
_ROUTES = {
    ("POST", "registered-models/create"): "model.register",
    ("DELETE", "registered-models/delete"): "model.delete",
    ("POST", "model-versions/create"): "model.version_create",
    ("DELETE", "model-versions/delete"): "model.version_delete",
    ("POST", "registered-models/alias"): "alias.set",
    ("DELETE", "registered-models/alias"): "alias.delete",
    ("POST", "users/permissions/grant"): "permission.grant",
    ("POST", "users/permissions/revoke"): "permission.revoke",
}
_PATH = re.compile(r"(?:ajax-)?api/[0-9.]+/mlflow/(?P<route>[a-z/-]+)")
_PERMISSION_ACTIONS = {"experiment": "permission.experiment", "registered_model": "permission.model"}
MAX_COPY = 64 * 1024  # bodies copied at most (MLflow's registry requests are small)
_MAX_FIELD = 255


def audited(method: str, rest: str) -> str | None:
    """The action a request (``rest``: its path under the service prefix) would be, or None."""
    match = _PATH.fullmatch(rest)
    return _ROUTES.get((method, match["route"])) if match else None


class Recorder:
    """Copies of one audited request's body and of MLflow's answer, up to MAX_COPY each."""

    def __init__(self, action: str):
        self.action = action
        self.request = bytearray()
        self.response = bytearray()

    @staticmethod
    def keep(buffer: bytearray, chunk: bytes) -> None:
        if len(buffer) + len(chunk) <= MAX_COPY:
            buffer += chunk
        else:
            buffer.clear()  # too large to be a registry request: report without it
            buffer += b"\0"  # (stays unparseable)

    def event(self, query: str) -> tuple[str, str, dict] | None:
        """(action, target, detail) from the copies; None for what is not worth an entry."""
        asked = _fields(bytes(self.request))
        for key, values in parse_qs(query).items():  # some clients send DELETE's fields in the query
            asked.setdefault(key, values[0][:_MAX_FIELD])
        answer = _fields(bytes(self.response), "model_version", "registered_model")
        name = asked.get("name") or answer.get("name") or "?"
        if self.action.startswith("permission."):
            kind = asked.get("resource_type", "")
            action = _PERMISSION_ACTIONS.get(kind)
            if action is None:
                return None
            change = self.action.split(".")[1]
            detail = {k: asked.get(k) for k in ("username", "permission")}
            return action, f"{kind.replace('_', ' ')} {asked.get('resource_id', '?')}", {"change": change, **detail}
        if self.action in ("model.version_create", "model.version_delete"):
            version = asked.get("version") or answer.get("version")
            detail = {"version": version}
            if self.action == "model.version_create":
                detail.update(run_id=asked.get("run_id"), model_source=asked.get("source"))
            return self.action, f"model {name}", detail
        if self.action.startswith("alias."):
            return self.action, f"model {name}", {"alias": asked.get("alias"), "version": asked.get("version")}
        return self.action, f"model {name}", {}


def _fields(body: bytes, *wrappers: str) -> dict[str, str]:
    """The top-level string (or number) fields of a JSON object, or of one it wraps; {} if none."""
    try:
        if body[:2] == b"\x1f\x8b":  # MLflow's answer, gzipped for a client that accepts it
            body = gzip.decompress(body)
        data = json.loads(body) if body else {}
    except (ValueError, RecursionError, OSError, EOFError, zlib.error):
        return {}
    if not isinstance(data, dict):
        return {}
    for key in wrappers:
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    return {k[:64]: str(v)[:_MAX_FIELD] for k, v in data.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}


def report(outbox, recorder: Recorder, actor: str, query: str) -> None:
    event = recorder.event(query)
    if event is None or outbox is None:
        return
    action, target, detail = event
    # The owner of a new model or version is who made it; of others' things an admin changed, not known here.
    owner = actor if action in ("model.register", "model.version_create") else None
    outbox.add(actor, action, target, owner, **detail)
