"""The hub's side of the warm server process (notebench.hub.server_zygote): start it, and ask it
for a forked user server.

One warm process per hub, started with the hub's first spawner and again if it dies; it exits
when the hub does (its control socket closes) and the servers it forked live on, as cold-started
ones do. A spawn sends the warm process one end of a new socket pair and writes the request
(arguments, environment, account, home, cgroup) on the other: only the forked child reads it.
Anything that goes wrong before the child says it runs raises ``ForkFailed``; the spawner then
starts the server cold.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys

from notebench.hub.server_zygote import WARM_HOME, WARM_USER, startup_env

log = logging.getLogger(__name__)

REPLY_TIMEOUT_SECONDS = 30  # the first spawn may wait for the warm process's imports (seconds)


class ForkFailed(Exception):
    """No forked server: the caller starts one cold."""


class ServerForker:
    _shared: ServerForker | None = None

    @classmethod
    def shared(cls) -> ServerForker:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._env: dict = {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, env: dict) -> None:
        """Start the warm process (if it does not run) with the interpreter settings of ``env``
        (a spawn's environment, or the part of it that is known before the first spawn)."""
        if self.pid is not None and startup_env(env) == self._env:
            return
        self.close()
        hub_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._env = startup_env(env)
        # HOME and USER are no one's: no user site of its own (the child adds its user's), and what
        # imports make of them is found and made the user's in each child (server_zygote.made_at_import).
        zygote_env = {**self._env, "PATH": env.get("PATH", os.environ.get("PATH", "")),
                      "HOME": WARM_HOME, "USER": WARM_USER, "LOGNAME": WARM_USER}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "notebench.hub.server_zygote", str(zygote_end.fileno())],
            pass_fds=[zygote_end.fileno()], env=zygote_env, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the hub's terminal is the hub's to handle
        )
        zygote_end.close()
        self._control = hub_end
        log.info("Warm server process started (pid %s)", self._proc.pid)

    def close(self, kill: bool = False) -> None:
        if self._control is not None:
            self._control.close()  # the warm process exits when it reads the end
            self._control = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self._proc.wait(5)  # no zombie left in the hub (a killed one ends at once)
            except subprocess.TimeoutExpired:
                pass
        self._proc = None

    async def spawn(self, request: dict) -> int:
        """The pid of a server forked for ``request`` (keys: cmd, args, env, os_user, home, cgroup)."""
        self.start(request["env"])
        assert self._control is not None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                socket.send_fds(self._control, [b"s"], [theirs.fileno()])
            except OSError as e:
                raise ForkFailed(f"the warm server process is gone: {e}") from e
            finally:
                theirs.close()
            reader, writer = await asyncio.open_unix_connection(sock=mine, limit=1024 * 1024)
        except BaseException:
            mine.close()
            raise
        pid = None
        try:
            pid = (await self._read(reader)).get("pid")
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            answer = await self._read(reader)
            if "error" in answer or not isinstance(pid, int):
                raise ForkFailed(f"the forked server did not start: {answer.get('error', answer)}")
            if answer.get("started") == "cold":
                log.info("Server %s: its environment or user site differs from the warm process's: started cold", pid)
            return pid
        except BaseException:
            if isinstance(pid, int):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> dict:
        try:
            line = await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT_SECONDS)
        except asyncio.TimeoutError as e:
            self.close(kill=True)  # hung: the next spawn starts a new one
            raise ForkFailed(f"no answer from the warm server process within {REPLY_TIMEOUT_SECONDS} s") from e
        except (ValueError, OSError) as e:
            raise ForkFailed(f"no answer from the warm server process: {e!r}") from e
        if not line:
            raise ForkFailed("the warm server process closed the socket (it died?)")
        try:
            answer = json.loads(line)
        except ValueError as e:
            raise ForkFailed(f"a garbled answer from the warm server process: {line[:80]!r}") from e
        if not isinstance(answer, dict):
            raise ForkFailed(f"a garbled answer from the warm server process: {line[:80]!r}")
        return answer
