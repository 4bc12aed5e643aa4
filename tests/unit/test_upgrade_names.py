"""Processes a Notebench from before the executor/runtime/ layout started are still recognised by
their command line after an upgrade (a restarted executor adopts them), and nothing else is."""

import sys

import pytest

from notebench.executor.backends.local.endpoints import HOST_MODULES
from notebench.executor.backends.local.jobs import RUNNER, RUNNER_MODULES, runs_module


class Process:
    """What runs_module reads of a psutil.Process: its command line."""

    def __init__(self, *cmdline):
        self._cmdline = list(cmdline)

    def cmdline(self):
        return self._cmdline


@pytest.mark.parametrize("modules, old, new", [
    (RUNNER_MODULES, "notebench.executor.runner", "notebench.executor.runtime.runner"),
    (HOST_MODULES, "notebench.executor.scoring_host", "notebench.executor.runtime.scoring_host"),
])
def test_old_and_new_module_names_are_recognised_and_nothing_else(modules, old, new):
    for name in (old, new):
        assert runs_module(Process(sys.executable, "-m", name, "--factory", "7"), modules)
    for impostor in (
        [sys.executable, "-m", name + "_evil"],
        [sys.executable, "-c", f"import {old}"],
        [sys.executable, "/tmp/x.py", "-m", old],
        [sys.executable, "-m"],
        [],
    ):
        assert not runs_module(Process(*impostor), modules), impostor


def test_runners_are_started_under_the_new_name():
    assert RUNNER[1:] == ["-m", "notebench.executor.runtime.runner"]
