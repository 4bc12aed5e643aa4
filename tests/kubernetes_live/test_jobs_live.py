"""Notebook jobs on the live cluster: the executor's Kubernetes backend and dispatcher (in this
process, as the executor's ServiceAccount with the chart's Role: live_executor.py), the real
scheduler, admission and Job controller, and the test node running the job pods' runner
(pod_runner: papermill and a kernel) as local processes. Issue 16's D1, D2 and D3 are here."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.kubernetes_live.cluster import StaticStorage, wait_until
from tests.kubernetes_live.live_executor import LiveExecutor, executor_account

pytestmark = pytest.mark.kubernetes_live

HOME_SIZE = "1Gi"


@pytest.fixture
def executor(kube_cluster, kube_node, kube_namespace, static_storage, tmp_path) -> LiveExecutor:
    """An executor for ``kube_namespace`` (not started); home volumes for ada, grace and alan,
    none of whom ever started a server."""
    static_storage.add({f"home-{user}": HOME_SIZE for user in ("ada", "grace", "alan")})
    return LiveExecutor(kube_namespace, executor_account(kube_cluster, kube_namespace, tmp_path), tmp_path / "data",
                        settings={"home_storage_size": HOME_SIZE, "home_storage_class": static_storage.class_name,
                                  "unschedulable_grace_seconds": 2})


def test_notebook_jobs_of_a_user_who_never_spawned_run_in_their_new_home(executor, kube_cluster):
    """D1: ada never started a server, so no home-ada existed: the executor makes it (as KubeSpawner
    would) and the job runs in it; a failing cell fails its job with the cell's error."""

    async def scenario():
        await executor.start()
        good = await executor.submit("import os\nopen('made-by-a-job.txt', 'w').write('hi')\nprint('in', os.getcwd())",
                                     timeout_seconds=120)
        bad = await executor.submit("x = 1", "1 / 0", "print('never')", timeout_seconds=120)
        done, failed = await executor.ended(good), await executor.ended(bad)
        log = (executor.dispatcher.job_dir(good) / "log.txt").read_text()
        await executor.stop()
        return done, failed, log

    done, failed, log = asyncio.run(scenario())
    assert done.status == "succeeded", (done.error, log)
    assert (failed.status, failed.error["ename"], failed.error["cell_index"]) == ("failed", "ZeroDivisionError", 1)
    pvc = kube_cluster.core.read_namespaced_persistent_volume_claim("home-ada", executor.namespace)
    assert pvc.status.phase == "Bound" and pvc.metadata.labels["app.kubernetes.io/managed-by"] == "kubespawner"
    assert pvc.metadata.annotations["hub.jupyter.org/username"] == "ada"
    home = kube_cluster.node.dir / "claims" / executor.namespace / "home-ada"  # the test node's directory for the claim
    assert (home / "made-by-a-job.txt").read_text() == "hi"
    # Ended jobs' Jobs are deleted, with their pods and Secrets.
    wait_until(lambda: not kube_cluster.batch.list_namespaced_job(executor.namespace).items, what="the Jobs to go")


def test_cancel_stops_a_running_job_and_deletes_its_pod(executor, kube_cluster):
    async def scenario():
        await executor.start()
        job_id = await executor.submit("print('started', flush=True)", "import time\ntime.sleep(600)", timeout_seconds=900)
        await executor.until(lambda: "started" in (executor.dispatcher.job_dir(job_id) / "log.txt").read_text()
                             if (executor.dispatcher.job_dir(job_id) / "log.txt").exists() else False, "the job to run")
        await executor.dispatcher.cancel(job_id)
        ended = await executor.ended(job_id, timeout=30)
        await executor.stop()
        return ended

    ended = asyncio.run(scenario())
    assert ended.status == "cancelled"
    wait_until(lambda: not kube_cluster.core.list_namespaced_pod(executor.namespace).items, what="the job's pod to go")


def test_a_third_gpu_job_waits_queued_for_the_nodes_two_gpus_and_its_timeout_does_not_count_the_wait(executor):
    """D2: the test node has 2 GPUs. Three 1-GPU jobs of 15 s each, 30 s timeouts: the third waits
    (shown queued, still this executor's) while the first two hold the GPUs, then runs, and is not
    timed out although more than 30 s pass between its submission and its end."""
    work = ("print('has a GPU', flush=True)", "import time\ntime.sleep(15)")

    def started(job_id: int) -> bool:  # its container runs (the pod log says so), so it holds a GPU
        log = executor.dispatcher.job_dir(job_id) / "log.txt"
        return log.exists() and "has a GPU" in log.read_text()

    async def scenario():
        await executor.start()
        executor.app.max_running_jobs_per_user = 3  # the wait is the scheduler's, not the executor's queue
        submitted = time.time()
        first = [await executor.submit(*work, profile="gpu", timeout_seconds=30) for _ in range(2)]
        await executor.until(lambda: all(started(j) for j in first), "two jobs to hold the GPUs")
        third = await executor.submit(*work, profile="gpu", timeout_seconds=30)
        held = await executor.until(lambda: (j := executor.job(third)).status == "queued" and j.executor_id and j,
                                    "the third job to be held for a GPU")
        ends = [await executor.ended(j) for j in [*first, third]]
        await executor.stop()
        return submitted, held, ends

    submitted, held, (one, two, three) = asyncio.run(scenario())
    assert held.executor_id == executor.executor_id and held.started_at is None
    assert [j.status for j in (one, two, three)] == ["succeeded"] * 3, [j.error for j in (one, two, three)]
    assert three.started_at.timestamp() >= min(one.finished_at, two.finished_at).timestamp() - 1  # got a freed GPU
    assert three.finished_at.timestamp() - submitted > 30  # longer than its timeout, counting the wait


def test_a_job_whose_pod_no_node_can_take_fails_within_seconds_with_the_schedulers_reason(executor):
    """D1's other half: never placed, it fails after the grace (2 s here), not at its timeout."""

    async def scenario():
        await executor.start()
        began = time.monotonic()
        job_id = await executor.submit("print(1)", profile="nowhere", timeout_seconds=3600)
        ended = await executor.ended(job_id, timeout=60)
        await executor.stop()
        return ended, time.monotonic() - began

    ended, took = asyncio.run(scenario())
    assert (ended.status, ended.error["ename"]) == ("failed", "Unschedulable")
    assert "node affinity/selector" in ended.error["evalue"] and took < 60


def test_a_restarted_executor_takes_over_a_running_job(executor):
    async def scenario():
        await executor.start()
        job_id = await executor.submit("print('before', flush=True)", "import time\ntime.sleep(8)", "print('after')",
                                       timeout_seconds=300)
        log = executor.dispatcher.job_dir(job_id) / "log.txt"
        await executor.until(lambda: log.exists() and "before" in log.read_text(), "the job to run")
        await executor.stop()  # the executor's pod went away; the job's pod runs on
        successor = await LiveExecutor(executor.namespace, executor.kubeconfig, executor.data_dir,
                                       executor_id="nb-executor-b", settings=executor.settings, port=executor.port).start()
        await successor.app.adopt()  # no pod named nb-executor-a: gone, its work is taken over
        await successor.dispatcher.recover()
        ended = await successor.ended(job_id)
        await successor.stop()
        return ended, log.read_text()

    ended, log = asyncio.run(scenario())
    assert (ended.status, ended.executor_id) == ("succeeded", "nb-executor-b"), ended.error
    assert log.count("before") == 1 and "after" in log  # the pod log read again from its start, not doubled


def test_jobs_run_where_owner_references_permission_enforcement_is_on(kube_cluster_owner_references_enforced, tmp_path):
    """D3: with the admission plugin OpenShift enforces, a Job's Secret owned by it (no
    blockOwnerDeletion) is accepted; before, every job failed with 403."""
    cluster = kube_cluster_owner_references_enforced
    namespace = cluster.create_namespace()
    storage = StaticStorage(cluster, namespace)
    storage.add({"home-ada": HOME_SIZE})
    executor = LiveExecutor(namespace, executor_account(cluster, namespace, tmp_path), tmp_path / "data",
                            settings={"home_storage_size": HOME_SIZE, "home_storage_class": storage.class_name})

    async def scenario():
        await executor.start()
        job_id = await executor.submit("print('owned')", timeout_seconds=120)
        ended = await executor.ended(job_id)
        await executor.stop()
        return ended

    try:
        ended = asyncio.run(scenario())
        assert ended.status == "succeeded", ended.error
    finally:
        storage.close()
        cluster.delete_namespace(namespace)
