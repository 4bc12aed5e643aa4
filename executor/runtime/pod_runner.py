"""A Kubernetes job pod's one process (``python -m notebench.executor.runtime.pod_runner``).

The job directory is the executor's, not the pod's (the executor's volume is ReadWriteOnce): the
pod fetches its input notebook from the executor, writes its events to stdout (the pod log, which
the executor follows) as lines starting with ``EVENT_PREFIX``, and hands its output notebook to
the executor while the job runs and at its end, before its 'finished' event; both calls carry the
job's own token (docs/kubernetes.md). The notebook runs as in a local runner (runner.run_job).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from notebench.executor.runtime.events import print_event
from notebench.executor.runtime.runner import import_papermill, run_job, start_kernel, stop_kernel

UPLOAD_EVERY_SECONDS = 5
UPLOAD_RETRY_SECONDS = 600  # the last upload waits this long for an executor being restarted


def executor_call(method: str, url: str, token: str, body: bytes | None = None) -> bytes:
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


class OutputUploader:
    """Hands output.ipynb to the executor whenever papermill has saved it anew (progress, and
    partial output if the job is stopped), and once more at the end, retrying."""

    def __init__(self, path: Path, url: str, token: str):
        self.path, self.url, self.token = path, url, token
        self.sent_mtime: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _send_if_changed(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self.sent_mtime:
            executor_call("PUT", self.url, self.token, self.path.read_bytes())
            self.sent_mtime = mtime

    def _loop(self) -> None:
        while not self.stop.wait(UPLOAD_EVERY_SECONDS):
            try:
                self._send_if_changed()
            except Exception as e:  # the executor may be restarting: the next round sends it
                logging.warning("could not hand the output notebook to the executor yet: %s", e)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()
        deadline = time.monotonic() + UPLOAD_RETRY_SECONDS
        while True:
            try:
                self._send_if_changed()
                return
            except Exception as e:
                if time.monotonic() > deadline:
                    logging.error("the output notebook could not be handed to the executor: %s", e)
                    return
                logging.warning("could not hand the output notebook to the executor yet (retrying): %s", e)
                time.sleep(UPLOAD_EVERY_SECONDS)


def run_in_pod() -> int:
    """A Kubernetes job pod's runner: one job, from NOTEBENCH_JOB_SPEC (docs/kubernetes.md)."""
    spec = json.loads(os.environ.pop("NOTEBENCH_JOB_SPEC"))
    url, token = os.environ.pop("NOTEBENCH_JOB_FILES_URL"), os.environ.pop("NOTEBENCH_JOB_TOKEN")
    job_dir = Path(tempfile.mkdtemp(prefix="notebench-job-"))
    spec["job_dir"] = str(job_dir)
    # Relative to the pod's home (where HOME says the home volume is); an absolute one stays as it is.
    spec["cwd"] = os.path.join(os.environ.get("HOME", "/"), spec["cwd"])
    # The kernel's IPC sockets in the pod, not on the home volume (network filesystems may not have them).
    os.environ["JUPYTER_RUNTIME_DIR"] = str(job_dir / "runtime")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    print_event(event="started")
    result = {"status": "failed", "error": {"ename": "RunnerError", "evalue": "the runner stopped", "cell_index": None}}
    uploader = None
    try:
        (job_dir / "input.ipynb").write_bytes(executor_call("GET", f"{url}/input", token))
        client_class = import_papermill()
        km, kc = start_kernel(spec["kernel"], spec["cwd"])
        client_class.ready_kc = kc
        uploader = OutputUploader(job_dir / "output.ipynb", f"{url}/output", token)
        try:
            with contextlib.ExitStack() as cluster:  # stays empty: the executor made the job's cluster
                result = run_job(spec, km, kc, cluster)
        finally:
            stop_kernel(km, kc)
    except Exception as e:
        logging.exception("the job could not run")
        result = {"status": "failed", "error": {"ename": type(e).__name__, "evalue": str(e), "cell_index": None}}
    finally:
        if uploader is not None:
            uploader.finish()  # the output is in before the executor reads 'finished'
        print_event(event="finished", **result)
    return 0


if __name__ == "__main__":
    sys.exit(run_in_pod())
