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


def execute_until_busy(base_url: str, user: str, token: str, kernel_id: str, code: str) -> None:
    """Send ``code`` to the kernel and return once the kernel reports it is busy running it."""

    async def run():
        ws_url = base_url.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kernel_id}/channels"
        ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
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
        await ws.write_message(
            json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"})
        )
        while True:
            raw = await asyncio.wait_for(ws.read_message(), 120)
            msg = json.loads(raw)
            if (
                msg.get("msg_type") == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "busy"
            ):
                break
        ws.close()

    asyncio.run(run())
