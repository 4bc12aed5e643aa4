"""`notebench jobs …`: the real command line, as a subprocess, against the session's hub."""

import json
import os
import pwd
import queue
import re
import subprocess
import sys
import threading
import uuid

import nbformat
import pytest

from tests.support.launcher import IS_ROOT, REPO, free_port, notebook, wait_for

JOBS = [sys.executable, "-m", "notebench.hub.cli", "jobs"]


def env_for(hub, token, **extra):
    """The environment of a terminal pointed at ``hub`` (None: at a port nothing listens on)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTEBENCH_TOKEN", "JUPYTERHUB_API_TOKEN", "NOTEBENCH_URL")}
    url = hub.url if hub else f"http://127.0.0.1:{free_port()}"
    env.update(NOTEBENCH_URL=url, **({"NOTEBENCH_TOKEN": token} if token else {}))
    env.update(extra)
    return env


def cli(hub, token, *args, timeout=120, **extra_env):
    return subprocess.run(
        JOBS + [str(a) for a in args], env=env_for(hub, token, **extra_env), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def write_notebook(path, *cells, parameters=None):
    nbformat.write(notebook(*cells, parameters=parameters), str(path))
    return path


def submitted_id(stdout: str) -> int:
    return int(re.search(r"submitted job (\d+)", stdout).group(1))


def home_of(hub, user):
    return pwd.getpwnam(f"nb-{user}").pw_dir if IS_ROOT else str(hub.data_dir / "homes" / user)


class Lines:
    """A running process's stdout, read by a thread, so a test waits on what it printed."""

    def __init__(self, proc):
        self.proc, self.text, self.q = proc, "", queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, needle, timeout=60):
        while needle not in self.text:
            line = self.q.get(timeout=timeout)
            assert line is not None, f"ended before {needle!r} appeared: {self.text!r}"
            self.text += line
        return self.text


@pytest.fixture(scope="module")
def alice(hub):
    return hub.new_user("cli-alice")


def test_submit_wait_with_typed_parameters_then_list_show_logs_output(hub, alice, tmp_path):
    nb = write_notebook(
        tmp_path / "params.ipynb",
        "print('typed:', type(n).__name__, n, type(lr).__name__, lr, tags, repr(label), flag)",
        parameters="n = 0\nlr = 0.0\ntags = []\nlabel = ''\nflag = None",
    )
    r = cli(
        hub, alice, "submit", nb, "-p", "n=3", "-p", "lr=0.1", "-p", 'tags=["a", 2]', "-p", "label=hello world",
        "-p", "flag=true", "--name", "cli-params", "--profile", "cpu", "--kernel", "python3", "--timeout", "600", "--wait",
        timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    job_id = submitted_id(r.stdout)
    assert f"job {job_id} succeeded" in r.stdout
    # stderr is not a terminal here: plain status lines, no bar redrawn in place.
    assert f"job {job_id}: succeeded" in r.stderr and "\r" not in r.stderr

    shown = cli(hub, alice, "show", job_id)
    assert shown.returncode == 0, shown.stderr
    for expected in ("cli-params", "succeeded", "cpu", "python3", "600 s", '"n": 3', '"lr": 0.1', '"tags": ["a", 2]', '"flag": true'):
        assert expected in shown.stdout
    as_json = json.loads(cli(hub, alice, "show", job_id, "--json").stdout)
    assert as_json["parameters"] == {"n": 3, "lr": 0.1, "tags": ["a", 2], "label": "hello world", "flag": True}

    out_file = tmp_path / "out.ipynb"
    r = cli(hub, alice, "output", job_id, "-o", out_file)
    assert r.returncode == 0, r.stderr
    printed = "".join(
        "".join(o.get("text", "")) for c in nbformat.read(str(out_file), as_version=4).cells for o in c.get("outputs", [])
    )
    assert "typed: int 3 float 0.1 ['a', 2] 'hello world' True" in printed
    html = cli(hub, alice, "output", job_id, "--html")
    assert html.returncode == 0 and "<html" in html.stdout.lower() and "typed: int 3" in html.stdout

    logs = cli(hub, alice, "logs", job_id)
    assert logs.returncode == 0 and "typed: int 3 float 0.1" in logs.stdout

    table = cli(hub, alice, "list", "--name", "cli-params")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "PROGRESS", "CREATED"]
    assert any(row.split()[:4] == [str(job_id), "cli-params", "succeeded", "3/3"] for row in rows), table.stdout
    assert str(job_id) not in cli(hub, alice, "list", "--status", "failed").stdout


def test_failing_notebook_exits_1_with_its_error_and_a_bar_on_a_terminal(hub, alice, tmp_path):
    nb = write_notebook(tmp_path / "boom.ipynb", "x = 1", "print('before the error')", "x / 0")
    # stderr on a pseudo-terminal: the progress bar is drawn in place.
    master, slave = os.openpty()
    proc = subprocess.Popen(
        JOBS + ["submit", str(nb), "--wait"], env=env_for(hub, alice), cwd=REPO, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=180)
    reader.join(30)
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 1, terminal
    job_id = submitted_id(stdout)
    assert re.search(rf"\r\x1b\[Kjob {job_id} \[[#-]+\] \d+/\d+ cells", terminal), terminal
    assert f"job {job_id} failed at cell 3: ZeroDivisionError: division by zero" in terminal, terminal

    shown = cli(hub, alice, "show", job_id).stdout
    assert "ZeroDivisionError: division by zero" in shown and re.search(r"^error cell:\s+3$", shown, re.M), shown
    partial = cli(hub, alice, "output", job_id)
    assert partial.returncode == 0 and "before the error" in partial.stdout
    listed = cli(hub, alice, "list", "--status", "failed")
    assert re.search(rf"^{job_id}\s+boom\s+failed\s", listed.stdout, re.M), listed.stdout


def test_list_pages_and_all(hub, alice, tmp_path):
    nb = write_notebook(tmp_path / "tiny.ipynb", "1 + 1")
    ids = [submitted_id(cli(hub, alice, "submit", nb, "--name", f"page-{i}").stdout) for i in range(2)]
    first = cli(hub, alice, "list", "--limit", "1", "--name", "page-")
    assert first.returncode == 0 and [int(line.split()[0]) for line in first.stdout.splitlines()[1:]] == [ids[1]]
    assert "--all" in first.stderr  # says there are more
    every = cli(hub, alice, "list", "--limit", "1", "--all", "--name", "page-")
    assert [int(line.split()[0]) for line in every.stdout.splitlines()[1:]] == ids[::-1]
    assert json.loads(cli(hub, alice, "list", "--json", "--name", "page-1").stdout)[0]["id"] == ids[1]
    empty = cli(hub, alice, "list", "--name", "nothing-like-this")
    assert empty.returncode == 0 and empty.stdout == "" and "no jobs" in empty.stderr
    for job_id in ids:  # they need not run
        hub.executor("POST", f"jobs/{job_id}/cancel", alice)
        hub.wait_job(job_id, alice)


def test_logs_follow_streams_until_the_job_ends(hub, alice, tmp_path):
    user, token = "cli-alice", alice
    gate = f"release-follow-{uuid.uuid4().hex[:8]}"  # homes outlive test runs (real OS accounts)
    nb = write_notebook(
        tmp_path / "slow.ipynb",
        "print('first line', flush=True)",
        f"import os, time\nwhile not os.path.exists({gate!r}): time.sleep(0.05)",
        "print('last line')",
    )
    job_id = submitted_id(cli(hub, token, "submit", nb).stdout)
    follow = subprocess.Popen(
        JOBS + ["logs", str(job_id), "-f"], env=env_for(hub, token), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = Lines(follow)
        lines.wait_for("first line")  # streamed while the job still runs
        assert hub.executor("GET", f"jobs/{job_id}", token).json()["status"] == "running"
        with open(os.path.join(home_of(hub, user), gate), "w"):
            pass
        lines.wait_for("last line")
        assert follow.wait(60) == 0  # ends by itself once the job has ended
    finally:
        follow.kill()
    assert lines.text.index("first line") < lines.text.index("last line")
    assert f"job {job_id} succeeded" in follow.stderr.read()


def test_cancel_a_running_job(hub, alice, tmp_path):
    token = alice
    nb = write_notebook(tmp_path / "forever.ipynb", "print('started', flush=True)", "import time; time.sleep(600)")
    job_id = submitted_id(cli(hub, token, "submit", nb, "--name", "forever").stdout)
    wait_for(lambda: "started" in hub.executor("GET", f"jobs/{job_id}/log", token).text, 120, message="the job printing")
    r = cli(hub, token, "cancel", job_id)
    assert r.returncode == 0 and f"job {job_id} cancelled" in r.stdout, r.stdout + r.stderr
    assert hub.executor("GET", f"jobs/{job_id}", token).json()["status"] == "cancelled"
    again = cli(hub, token, "cancel", job_id)
    assert again.returncode == 0 and "already cancelled" in again.stderr


# --- errors: all exit 2 with a clear message ---------------------------------------------------


# (the checks made before any request need no hub: those tests run without one)


@pytest.fixture(scope="module")
def valid_nb(tmp_path_factory):
    return write_notebook(tmp_path_factory.mktemp("cli-nb") / "ok.ipynb", "1")


@pytest.mark.parametrize(
    "args, message",
    [
        (["submit", "{nb}", "--profile", "no-such-profile"], "unknown profile 'no-such-profile'; choose one of: cpu, gpu (field: profile)"),
        (["submit", "{nb}", "--kernel", "no-such-kernel"], "unknown kernel 'no-such-kernel'"),
        (["submit", "{nb}", "--cwd", "../elsewhere"], "(field: cwd)"),
        (["submit", "{nb}", "--workers", "65"], "(field: workers)"),
        (["submit", "{nb}", "-p", "not-an-identifier=1"], "(field: parameters)"),
        (["submit", "{not_a_notebook}"], "(field: notebook)"),
        (["show", "999999"], "HTTP 404: no job 999999"),
        (["logs", "999999"], "HTTP 404: no job 999999"),
        (["cancel", "999999"], "HTTP 404: no job 999999"),
        (["output", "999999"], "HTTP 404: no job 999999"),
    ],
)
def test_api_refusals_print_the_message_and_field(hub, alice, valid_nb, tmp_path, args, message):
    not_a_notebook = tmp_path / "cells.json"
    not_a_notebook.write_text('{"cells": 3}')
    r = cli(hub, alice, *[a.format(nb=valid_nb, not_a_notebook=not_a_notebook) for a in args])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "notebench: error: HTTP 4" in r.stderr and message in r.stderr, r.stderr


def test_another_users_job_is_not_found(hub, alice, tmp_path):
    job_id = submitted_id(cli(hub, alice, "submit", write_notebook(tmp_path / "mine.ipynb", "1")).stdout)
    r = cli(hub, hub.new_user("cli-mallory"), "show", job_id)
    assert r.returncode == 2 and f"no job {job_id}" in r.stderr
    hub.wait_job(job_id, alice)


def test_bad_token(hub, valid_nb):
    r = cli(hub, "not-a-real-token", "submit", valid_nb)
    assert r.returncode == 2 and "HTTP 401: Not authenticated" in r.stderr, r.stderr
    assert "NOTEBENCH_TOKEN" in r.stderr


def test_missing_token():
    r = cli(None, None, "list")
    assert r.returncode == 2 and "no API token: set NOTEBENCH_TOKEN" in r.stderr


def test_jupyterhub_api_token_is_enough(hub):  # as inside a user's server
    r = cli(hub, None, "list", JUPYTERHUB_API_TOKEN=hub.new_user("cli-inside"))
    assert r.returncode == 0 and "no jobs" in r.stderr, r.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}", "localhost:{port}"])
def test_unreachable_or_bad_url(valid_nb, url):
    r = cli(None, "t", "submit", valid_nb, NOTEBENCH_URL=url.format(port=free_port()))
    assert r.returncode == 2
    assert "cannot reach Notebench at http" in r.stderr or "is not a URL" in r.stderr, r.stderr


def test_missing_or_invalid_notebook(tmp_path):
    r = cli(None, "t", "submit", tmp_path / "nope.ipynb")
    assert r.returncode == 2 and f"notebook {tmp_path / 'nope.ipynb'}: no such file" in r.stderr
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    r = cli(None, "t", "submit", broken)
    assert r.returncode == 2 and f"notebook {broken} is not valid JSON" in r.stderr
    r = cli(None, "t", "submit", tmp_path)
    assert r.returncode == 2 and "is a directory" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["submit", "x.ipynb", "-p", "novalue"], "expected key=value"),
        (["show", "abc"], "is not a job id"),
        (["list", "--status", "done"], "invalid choice"),
        (["submit", "x.ipynb", "--timeout", "0"], "expected a positive integer"),
    ],
)
def test_bad_arguments(args, message):
    r = cli(None, "t", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_parameter_values_are_json_when_they_parse():
    from notebench.executor.cli import parameter

    assert parameter("n=3") == ("n", 3)
    assert parameter("lr=0.1") == ("lr", 0.1)
    assert parameter('tags=["a"]') == ("tags", ["a"])
    assert parameter('cfg={"k": null}') == ("cfg", {"k": None})
    assert parameter("flag=true") == ("flag", True)
    assert parameter("flag=False") == ("flag", False)  # papermill's -p reads Python's too
    assert parameter("s=hello") == ("s", "hello")
    assert parameter('s="3"') == ("s", "3")
    assert parameter("expr=a=b") == ("expr", "a=b")
    assert parameter("x=NaN") == ("x", "NaN")  # not JSON the API takes: kept a string
    assert parameter("empty=") == ("empty", "")


# --- owners (issue 15): admins see whose each job is -------------------------------------------


@pytest.fixture(scope="module")
def two_owners(hub, tmp_path_factory):
    """Two users with one job each (names starting jp: OS accounts are machine-wide)."""
    people = {}
    path = write_notebook(tmp_path_factory.mktemp("owners") / "owned.ipynb", "print('mine')")
    for prefix in ("jp-cli-a", "jp-cli-b"):
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        token = hub.new_user(name)
        r = cli(hub, token, "submit", path, "--name", f"owned-{name}", "--wait")
        assert r.returncode == 0, r.stderr
        people[name] = (token, submitted_id(r.stdout))
    return people


def test_admin_list_shows_every_owner(hub, two_owners):
    for name, (_, job) in two_owners.items():
        # Even filtered down to one owner's jobs, the admin's list says whose they are.
        r = cli(hub, hub.admin_token, "list", "--owner", name)
        assert r.returncode == 0, r.stderr
        header, *rows = r.stdout.splitlines()
        assert header.split()[:3] == ["ID", "NAME", "OWNER"], r.stdout
        assert len(rows) == 1 and rows[0].split()[:3] == [str(job), f"owned-{name}", name], r.stdout
    r = cli(hub, hub.admin_token, "list", "--name", "owned-jp-cli-", "--limit", "200")
    assert r.returncode == 0, r.stderr
    for name, (_, job) in two_owners.items():
        assert any(line.split()[:3] == [str(job), f"owned-{name}", name] for line in r.stdout.splitlines()), r.stdout


def test_users_list_their_own_jobs_without_an_owner_column(hub, two_owners):
    (first, (token, job)), (second, _) = two_owners.items()
    r = cli(hub, token, "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert "OWNER" not in header.split() and [row.split()[0] for row in rows] == [str(job)], r.stdout
    r = cli(hub, token, "list", "--owner", first)  # naming themselves is fine
    assert r.returncode == 0 and str(job) in r.stdout, r.stderr
    r = cli(hub, token, "list", "--owner", second)  # anyone else is an admin's business
    assert r.returncode == 2 and "HTTP 403" in r.stderr and "(field: owner)" in r.stderr, r.stderr
