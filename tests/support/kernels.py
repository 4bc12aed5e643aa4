"""Start kernels in a user's server and make them busy, through the public proxy, as JupyterLab does."""

import asyncio
import json
import uuid
from datetime import datetime, timezone

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


def start_kernel(base_url: str, user: str, token: str) -> str:
    r = requests.post(f"{base_url}/user/{user}/api/kernels", headers={"Authorization": f"token {token}"}, json={}, timeout=60)
    r.raise_for_status()
    return r.json()["id"]


def kernels(base_url: str, user: str, token: str) -> dict:
    r = requests.get(f"{base_url}/user/{user}/api/kernels", headers={"Authorization": f"token {token}"}, timeout=60)
    r.raise_for_status()
    return {k["id"]: k for k in r.json()}


def _execute_request(user: str, code: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "username": user,
        "session": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "version": "5.3",
        "date": datetime.now(timezone.utc).isoformat(),
    }
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    return msg_id, json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"})


def execute(base_url: str, user: str, token: str, kernel_id: str, code: str, until: str = "idle", timeout=120) -> str:
    """Run ``code`` in the kernel over its websocket (through the proxy, as JupyterLab does).

    Returns once the kernel reports ``until`` ('busy': it started running; 'idle': it finished)
    with the text it printed; raises if the code raised.
    """

    async def run():
        ws_url = base_url.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kernel_id}/channels"
        ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
        msg_id, request = _execute_request(user, code)
        await ws.write_message(request)
        printed, error = [], None
        try:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.read_message(), timeout))
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    printed.append(content["text"])
                elif kind == "error":
                    error = f"{content['ename']}: {content['evalue']}"
                elif kind == "status" and content["execution_state"] == until:
                    break
        finally:
            ws.close()
        if error:
            raise RuntimeError(f"kernel raised {error}; printed: {''.join(printed)}")
        return "".join(printed)

    return asyncio.run(run())


def execute_until_busy(base_url: str, user: str, token: str, kernel_id: str, code: str) -> None:
    """Send ``code`` to the kernel and return once the kernel reports it is busy running it."""
    execute(base_url, user, token, kernel_id, code, until="busy")


def server_env(hub, user: str) -> dict:
    """The environment of ``user``'s running server, as its kernels get it. (Not /proc/<pid>/environ:
    a forked server's shows the warm process's start, see notebench.hub.server_zygote.)"""
    token = hub.api("POST", f"/users/{user}/tokens", json={"note": "server_env"}).json()["token"]
    kernel_id = start_kernel(hub.url, user, token)
    try:
        printed = execute(hub.url, user, token, kernel_id, "import json, os; print(json.dumps(dict(os.environ)))")
    finally:
        requests.delete(f"{hub.url}/user/{user}/api/kernels/{kernel_id}", headers={"Authorization": f"token {token}"},
                        timeout=60)
    return json.loads(printed)
