"""Processes started before they are needed, so that work starts on one already warm: runners
with a started kernel (jobs), scoring hosts with their imports done (endpoints)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

from notebench.executor.background import BackgroundTasks


class Warm(Protocol):
    ready: asyncio.Future[bool]  # True once it can take work; False if it never will

    def alive(self) -> bool: ...


W = TypeVar("W", bound=Warm)


class WarmPool(Generic[W]):
    """Per key (e.g. an owner), up to a number of warm processes. ``let_go`` (if given) is called on
    one left unused for ``idle_seconds``; without it, the processes leave by themselves."""

    def __init__(self, tasks: BackgroundTasks, idle_seconds: float = 0, let_go: Callable[[W], None] | None = None):
        self._tasks = tasks
        self._idle_seconds, self._let_go = idle_seconds, let_go
        self._pools: defaultdict[Hashable, list[W]] = defaultdict(list)
        self._starting: Counter = Counter()  # being started, per key

    def refill(self, key: Hashable, size: int, start: Callable[[], Awaitable[W]]) -> None:
        """Start as many as the pool of ``key`` lacks (counting those being started)."""
        pool = self._pools[key]
        pool[:] = [w for w in pool if w.alive()]

        async def add():
            try:
                warm = await start()
            finally:
                self._starting[key] -= 1
            pool.append(warm)
            if self._let_go is not None:
                asyncio.get_running_loop().call_later(self._idle_seconds, self._retire, key, warm)

        for _ in range(size - len(pool) - self._starting[key]):
            self._starting[key] += 1
            self._tasks.start(add())

    def _retire(self, key: Hashable, warm: W) -> None:
        if warm in self._pools[key]:
            self._pools[key].remove(warm)
            assert self._let_go is not None
            self._let_go(warm)

    async def take(self, key: Hashable) -> W | None:
        """A ready one of ``key``'s, or None."""
        pool = self._pools[key]
        while pool:
            warm = pool.pop(0)
            if warm.alive() and await warm.ready:
                return warm
        return None

    def drain(self) -> list[W]:
        """All of them, removed from the pool (on close)."""
        members = [w for pool in self._pools.values() for w in pool]
        self._pools.clear()
        return members
