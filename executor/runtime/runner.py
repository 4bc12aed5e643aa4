"""One job's process, run as the job's owner: papermill on a kernel that was started ahead of time.

The executor keeps, per owner, a runner factory (``--factory``): a process, as the owner, that
imported papermill once and forks a runner on request, so a runner costs no Python start-up nor
imports. A runner starts its kernel, says it is ready on its channel (a socket to the executor),
then waits there for one job spec, as a JSON line. The executor asks for runners before jobs
arrive (the warm pool), so a job starts on a warm kernel; the kernel is never reused (the runner
exits after one job).

The runner reports to the job directory, not to its parent, so a job outlives a crashed executor:
``events.jsonl`` (JSON lines: started, finished), ``output.ipynb`` (saved after every cell by
papermill) and ``log.txt`` (stdout/stderr and the cells' output).

A job with ``workers`` gets a Dask cluster whose scheduler and nannies live in the runner (the
workers are processes of their own); as each cell starts, the runner imports that cell's libraries
into it, until its first graph: see dask_warmup.py.

On Kubernetes a job pod runs pod_runner.py instead, with the same papermill engine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from notebench.executor.runtime.events import emit


def start_kernel(kernel_name: str, cwd: str):
    from jupyter_client.manager import KernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    # IPC sockets in the owner's runtime dir: no TCP port for another kernel to grab first.
    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    km = KernelManager(kernel_name=kernel_name, transport="ipc", ip=os.path.join(runtime, f"nb-job-{os.getpid()}"))
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc


def run_silently(kc, code: str) -> None:
    """Run set-up code in the kernel before the notebook (no output, no history)."""
    msg_id = kc.execute(code, silent=True, store_history=False)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"kernel set-up failed: {reply['content']}")
            return


def gpu_workers_cluster_class():
    from distributed import LocalCluster

    class GPUWorkersCluster(LocalCluster):
        """A LocalCluster whose workers each see their own leased GPUs (CUDA_VISIBLE_DEVICES)."""

        def __init__(self, *, worker_gpus: list, n_workers: int, **kwargs):
            self.worker_gpus = worker_gpus
            super().__init__(n_workers=0, **kwargs)  # then one spec per worker, through scale()
            self.scale(n_workers)
            self.wait_for_workers(n_workers)

        def new_worker_spec(self):
            # scale() adds workers one at a time: the n-th new one gets the n-th device list.
            devices = ",".join(self.worker_gpus[len(self.worker_spec) % len(self.worker_gpus)])
            return {
                name: {**worker, "options": {**worker["options"], "env": {**worker["options"].get("env", {}), "CUDA_VISIBLE_DEVICES": devices}}}
                for name, worker in super().new_worker_spec().items()
            }

    return GPUWorkersCluster


def start_dask(spec: dict, job_dir: Path, env: dict):
    """The job's Dask cluster, for the job only: TLS with a key made for this job (kept in its 0700
    directory) and no HTTP endpoints, so no other local account can reach it and run code as the
    owner. Returns the cluster and the environment a client needs to connect."""
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    security = Security.temporary()
    pem = job_dir / "dask-tls.pem"
    with os.fdopen(os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(security.tls_client_cert + security.tls_client_key)  # self-signed: also the CA
    worker_gpus = spec.get("worker_gpus") or []
    with dask.config.set({"distributed.scheduler.http.routes": []}):
        cluster_class = gpu_workers_cluster_class() if worker_gpus else LocalCluster
        options = {"worker_gpus": worker_gpus} if worker_gpus else {}
        cluster = cluster_class(
            **options,
            n_workers=spec["workers"],
            threads_per_worker=spec.get("worker_threads") or 1,
            memory_limit=spec.get("worker_memory") or "auto",
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            protocol="tls://",
            security=security,
            env=env,  # MLFLOW_RUN_ID etc. reach code running on the workers too
        )
    client_env = {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(pem),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(pem),
    }
    return cluster, client_env


def wait_for_dask(address: str, workers: int, timeout: float = 600) -> None:
    """Wait until the job's Dask cluster (pods being scheduled and pulled) has all its workers."""
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(workers, timeout=timeout)


# Cells papermill adds to the output: the injected parameters, and its error banner and anchor.
ADDED_CELL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def failed_cell(job_dir: Path, error) -> dict:
    """Where the failing cell is: ``cell_index`` in the user's notebook (papermill's added cells not
    counted, so it is the cell the user wrote), ``output_cell_index`` in the output notebook."""
    try:
        cells = json.loads((job_dir / "output.ipynb").read_text())["cells"]
        at = next(i for i, c in enumerate(cells) if c.get("metadata", {}).get("papermill", {}).get("exception"))
    except (OSError, ValueError, KeyError, StopIteration):
        return {"cell_index": None, "output_cell_index": error.cell_index}
    added = sum(1 for c in cells[:at] if ADDED_CELL_TAGS & set(c.get("metadata", {}).get("tags", [])))
    return {"cell_index": at - added, "output_cell_index": at}


def run_job(spec: dict, km, kc, cleanup: contextlib.ExitStack) -> dict:
    """Execute the notebook; returns the 'finished' event's fields. The Dask cluster it starts is
    left on ``cleanup``, for the caller to close when it chooses."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    job_dir = Path(spec["job_dir"])
    parameters = dict(spec.get("parameters") or {})
    hooks = {}  # nbclient's
    try:
        env = {k: str(v) for k, v in (spec.get("kernel_env") or {}).items()}
        if spec.get("dask_scheduler_address"):  # Kubernetes: the executor made the job's cluster
            wait_for_dask(spec["dask_scheduler_address"], spec["workers"])
            parameters["dask_scheduler_address"] = spec["dask_scheduler_address"]
        elif spec.get("workers"):
            cluster, client_env = start_dask(spec, job_dir, env)
            cleanup.enter_context(cluster)
            env.update(client_env)
            parameters["dask_scheduler_address"] = cluster.scheduler_address
            from notebench.executor.runtime.dask_warmup import SchedulerWarmer

            hooks["on_cell_start"] = SchedulerWarmer(cluster).on_cell_start
        run_silently(kc, f"import os as _nb_os; _nb_os.environ.update({env!r}); _nb_os.chdir({spec['cwd']!r}); del _nb_os")
        papermill.execute_notebook(
            str(job_dir / "input.ipynb"),
            str(job_dir / "output.ipynb"),
            parameters=parameters,
            kernel_name=spec["kernel"],
            engine_name=ENGINE,
            km=km,
            cwd=spec["cwd"],
            log_output=True,
            progress_bar=False,
            request_save_on_cell_execute=True,
            autosave_cell_every=5,
            **hooks,
        )
        return {"status": "succeeded"}
    except PapermillExecutionError as e:
        return {"status": "failed", "error": {"ename": e.ename, "evalue": e.evalue, **failed_cell(job_dir, e)}}
    except Exception as e:  # the notebook could not even be run: kernel died, bad notebook...
        logging.exception("job failed outside the notebook")
        return {"status": "failed", "error": {"ename": type(e).__name__, "evalue": str(e), "cell_index": None}}


ENGINE = "notebench"  # papermill's engine registry name of ReadyKernelEngine


def import_papermill():
    """Import papermill (most of the runner's start-up, without its optional imports: see
    imports.py) and register its engine that runs on our ready kernel client; returns that
    client's class (its ``ready_kc`` is set per job)."""
    from notebench.executor.runtime.imports import without_optional_imports

    with without_optional_imports():
        from papermill.clientwrap import PapermillNotebookClient
        from papermill.engines import NBClientEngine, papermill_engines
        from papermill.log import logger
        from papermill.utils import merge_kwargs, remove_args

    class ReadyKernelClient(PapermillNotebookClient):
        """nbclient would make a second client and wait for it (kernel_info, then 0.2 s of iopub
        silence) although the runner's own is connected and ready: use that one."""

        ready_kc = None
        running = None  # the job's client, for save_and_exit

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            ReadyKernelClient.running = self
            if self.ready_kc is not None:
                self.kc = self.ready_kc
                self.kc.allow_stdin = False

    class ReadyKernelEngine(NBClientEngine):
        """papermill's nbclient engine, with its notebook client on the runner's ready kernel."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                     start_timeout=60, execution_timeout=None, **kwargs):
            timeout = execution_timeout or kwargs.get("timeout")
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            options = merge_kwargs(kwargs, timeout=timeout, startup_timeout=start_timeout, kernel_name=kernel_name,
                                   log=logger, log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            return ReadyKernelClient(nb_man, **options).execute()

    papermill_engines.register(ENGINE, ReadyKernelEngine)
    return ReadyKernelClient


STOPPED_NOTE = "\n[Notebench] The job was stopped here (cancelled, or out of time): above is what this cell wrote until then.\n"


def save_and_exit(client_class) -> None:
    """The executor's SIGTERM (the job is cancelled or out of time): save the notebook with all the
    output so far, the running cell's included (papermill saves only between cells and every few
    seconds), then exit. The executor kills the kernel and the rest right after."""
    client = client_class.running
    try:
        if client is not None:
            import nbformat

            for cell in client.nb_man.nb.cells:
                if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
                    cell.outputs.append(nbformat.v4.new_output("stream", name="stderr", text=STOPPED_NOTE))
            client.nb_man.save()
    except Exception:
        logging.exception("could not save the output of the stopped job")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signal.SIGTERM)


def run_one_job(kernel_name: str, cwd: str, channel: socket.socket, client_class) -> int:
    km, kc = start_kernel(kernel_name, cwd)
    client_class.ready_kc = kc
    kernel_pid = km.provisioner.process.pid
    channel.sendall(json.dumps({"event": "ready", "pid": os.getpid(), "kernel_pid": kernel_pid}).encode() + b"\n")

    line = channel.makefile("r").readline()
    channel.close()
    if not line.strip():  # the executor let this warm runner go (or is gone)
        stop_kernel(km, kc)
        return 0
    spec = json.loads(line)
    job_dir = Path(spec["job_dir"])
    events = job_dir / "events.jsonl"
    # From now on everything goes to the job's log.
    log = os.open(job_dir / "log.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    signal.signal(signal.SIGTERM, lambda *_: save_and_exit(client_class))
    emit(events, event="started", kernel_pid=kernel_pid, runner_pid=os.getpid())
    result = {"status": "failed", "error": {"ename": "RunnerError", "evalue": "the runner stopped", "cell_index": None}}
    # A job's GPUs go to the next job as soon as it is reported finished: a GPU job's kernel and
    # GPU workers (and their GPU memory) must be gone first. Other jobs report first: the owner need
    # not wait for the kernel's shutdown (~0.1 s) nor the Dask cluster's (~0.5 s). Both are in the
    # runner's process group, which the executor kills if we die.
    holds_gpus = bool(os.environ.get("CUDA_VISIBLE_DEVICES"))
    with contextlib.ExitStack() as cluster:
        try:
            result = run_job(spec, km, kc, cluster)
        finally:
            if spec.get("worker_gpus"):
                cluster.close()
            if holds_gpus:
                stop_kernel(km, kc)
            emit(events, event="finished", **result)
            if not holds_gpus:
                stop_kernel(km, kc)
    return 0


def stop_kernel(km, kc) -> None:
    """Shut the kernel down and wait until its process has exited and been reaped."""
    process = km.provisioner.process
    kc.stop_channels()
    km.shutdown_kernel(now=True)  # waits 5 s at most; a GPU context can take longer to tear down
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        logging.warning("kernel %s still exiting after 120 s", process.pid)


def reap_runners(*_signal) -> None:
    """Wait for the runners that ended (no zombies; their CPU time is accounted to the factory)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def become_subreaper() -> None:
    """Orphans of this factory's runners (a kernel whose runner exited first, a process a notebook
    left behind) are re-parented here and reaped by reap_runners, not left as zombies under a
    PID 1 that may not reap (containers, some VMs)."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def factory(control: socket.socket, client_class) -> int:
    """Fork a runner for each request on ``control`` (a SOCK_SEQPACKET socket): a JSON message
    {kernel, cwd, env} carrying the runner's channel as a file descriptor. Ends at EOF."""
    signal.signal(signal.SIGCHLD, reap_runners)
    become_subreaper()
    while True:
        message, fds, _flags, _addr = socket.recv_fds(control, 256 * 1024, 1)
        if not message:
            return 0
        request = json.loads(message)
        if os.fork() == 0:
            code = 1
            try:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the runner waits for its kernel
                os.setsid()  # a process group of its own: killed as a whole
                os.environ.update(request["env"])
                code = run_one_job(request["kernel"], request["cwd"], socket.socket(fileno=fds[0]), client_class)
            except BaseException:
                logging.exception("runner failed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        for fd in fds:
            os.close(fd)


def main() -> int:
    if sys.argv[1:2] != ["--factory"] or len(sys.argv) != 3:
        print("usage: python -m notebench.executor.runtime.runner --factory CONTROL_FD (started by the executor)", file=sys.stderr)
        return 2
    client_class = import_papermill()  # once, before any runner is asked for
    return factory(socket.socket(fileno=int(sys.argv[2])), client_class)


if __name__ == "__main__":
    sys.exit(main())
