"""Calls from the user's server to the Notebench services, with the server's own hub token.

Only a fixed set of upstreams exists, all under NOTEBENCH_URL. Callers give path *segments*; each
one is percent-encoded as a whole, so a value taken from a request (a job id, a model name) can
never add a path level, climb with "..", or name another host: no SSRF.

What comes back is parsed bounded (``load_json``): Python's JSON parser recurses, so an answer
nested thousands deep (a model's input example, a scoring server's answer: a user's code wrote
them) would end in a RecursionError; it is a 502 naming the upstream instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.web import HTTPError

# Deeper JSON than any Notebench request or answer needs (a notebook's own nesting is about 6).
MAX_JSON_DEPTH = 64

# The only places the extension talks to, relative to NOTEBENCH_URL.
UPSTREAMS = {
    "executor": "/services/executor/api/",
    "endpoints": "/services/executor/endpoints/",
    "mlflow": "/services/mlflow/api/2.0/mlflow/",
    "mlflow3": "/services/mlflow/api/3.0/mlflow/",  # MLflow 3's permission API
    "mlflow-artifacts": "/services/mlflow/api/2.0/mlflow-artifacts/artifacts/",
}


def load_json(data: bytes | str, what: str):
    """Parse JSON that someone else wrote; ValueError naming ``what`` and what is wrong with it."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:  # not JSON, or not UTF-8
        raise ValueError(f"{what} is not JSON ({e})") from None
    check_depth(value, what)
    return value


def check_depth(value, what: str) -> None:
    """ValueError if lists and objects in ``value`` nest deeper than MAX_JSON_DEPTH (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))


@dataclass
class UpstreamResponse:
    upstream: str
    status: int
    headers: dict
    body: bytes

    def json(self):
        """The answer's JSON; an answer that is not JSON (or too deep) is the upstream's fault: 502."""
        try:
            return load_json(self.body or b"null", f"the answer from {self.upstream}")
        except ValueError as e:
            raise HTTPError(502, str(e)) from None


def base_url() -> str:
    url = os.environ.get("NOTEBENCH_URL", "").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HTTPError(503, "Notebench is not configured: NOTEBENCH_URL is not set to the hub's URL")
    return url


def upstream_url(upstream: str, segments: tuple[str, ...] | list[str], query: dict | None = None) -> str:
    """The URL of ``segments`` under one of the fixed upstreams."""
    prefix = UPSTREAMS[upstream]
    quoted = []
    for segment in segments:
        segment = str(segment)
        if segment in ("", ".", ".."):
            raise HTTPError(400, f"invalid path segment {segment!r}")
        quoted.append(quote(segment, safe=""))
    url = base_url() + prefix + "/".join(quoted)
    if query:
        url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
    return url


async def call(
    upstream: str,
    segments: tuple[str, ...] | list[str] = (),
    method: str = "GET",
    body=None,
    query: dict | None = None,
    timeout: float = 60.0,
    raise_error: bool = True,
) -> UpstreamResponse:
    """Send one request upstream as this server's user; upstream 4xx/5xx become HTTPErrors."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise HTTPError(503, "Notebench is not configured: this server has no JUPYTERHUB_API_TOKEN")
    headers = {"Authorization": f"token {token}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = HTTPRequest(
        upstream_url(upstream, segments, query),
        method=method,
        headers=headers,
        body=data,
        allow_nonstandard_methods=True,  # DELETE with a body (MLflow aliases)
        follow_redirects=False,  # a redirect could point anywhere
        request_timeout=timeout,
    )
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except (OSError, HTTPClientError) as e:
        raise HTTPError(502, f"{upstream} is unreachable: {e}") from e
    if response.code == 599:
        raise HTTPError(502, f"{upstream} is unreachable: {response.error}")
    result = UpstreamResponse(upstream, response.code, dict(response.headers), response.body or b"")
    if raise_error and result.status >= 400:
        raise UpstreamError(result)
    return result


class UpstreamError(HTTPError):
    """An upstream's error, passed on with its status and message."""

    def __init__(self, response: UpstreamResponse):
        message = response.body.decode(errors="replace")[:2000]
        try:
            payload = load_json(response.body or b"null", f"the answer from {response.upstream}")
            if isinstance(payload, dict):
                message = payload.get("message") or payload.get("error") or message
        except ValueError:
            pass
        # A 401/403 from upstream means this server's token is refused there, not that the
        # browser is logged out: report it as a gateway problem so the front end does not log out.
        status = 502 if response.status in (401, 407) else response.status
        super().__init__(status, message)
