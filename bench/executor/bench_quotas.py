"""What the quota checks add to job submission (issue 17; goal: under 5 % of the submit p50).

    .venv/bin/python bench/executor/bench_quotas.py [--submits 60] [--checks 2000] [--history 2000]

One real `notebench up` (tests/support/launcher.py's Hub). A user in a group, with a quota record of
their own, their group's and defaults (so every source is read), submits --submits jobs through the
public proxy with their token; each POST /jobs is timed (submit -> 201) and the job cancelled (not
timed). The store then holds --history more ended jobs of other users (fair share and usage read
them). In this process, on the hub's own store file, the same checks the executor runs are timed
--checks times: the submission's (``Quotas.check_job``: the records, the queued count, what the
user holds) and a dispatch round's extra reads (``held_by_owner`` and fair share's
``recent_usage``, which happen once per round, not per job). Figures: p50/p95 of each, and the
submission check's p50 as a share of the submit p50, both measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from notebench.executor import db  # noqa: E402
from notebench.executor.jobs.fair_share import FairShare  # noqa: E402
from notebench.executor.quotas import Quotas  # noqa: E402
from notebench.hub.platform.profiles import Profiles  # noqa: E402
from tests.support.launcher import BASE_CONFIG, Hub, notebook  # noqa: E402

CONFIG = BASE_CONFIG + """
c.Notebench.mlflow_enabled = False
c.Quotas.defaults = {"queued_jobs": 100000, "endpoints": 10}
"""


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:.3f} ms, p95 {p95 * 1000:.3f} ms (n={len(ordered)})"


def timed(fn, times: int) -> list[float]:
    out = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=60)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--history", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-quotas-") as tmp:
        hub = Hub(Path(tmp) / "data", config=CONFIG).start()
        try:
            token = hub.new_user("quota-bench")
            assert hub.api("POST", "/groups/bench-team").status_code == 201
            assert hub.api("POST", "/groups/bench-team/users", json={"users": ["quota-bench"]}).status_code == 200
            for kind, name, body in (("users", "quota-bench", {"running_jobs": 2, "cpu": 64}),
                                     ("groups", "bench-team", {"gpus": 2, "memory": 256, "dask_workers": 4})):
                assert hub.executor("PUT", f"quotas/{kind}/{name}", None, json=body).status_code == 200
            submit_times = []
            body = {"notebook": notebook("print(1)"), "name": "bench"}
            for _ in range(args.submits + 3):
                start = time.perf_counter()
                r = hub.executor("POST", "jobs", token, json=body)
                submit_times.append(time.perf_counter() - start)
                assert r.status_code == 201, r.text
                hub.executor("POST", f"jobs/{r.json()['id']}/cancel", token)
            submit_times = submit_times[3:]  # the first ones warm the executor's caches

            sessions = db.connect(f"sqlite:///{hub.data_dir / 'executor.sqlite'}")
            now = db.utcnow()
            with sessions() as s:
                for i in range(args.history):
                    s.add(db.Job(name="old", owner=f"someone-{i % 50}", status="succeeded", profile="cpu",
                                 kernel="python3", timeout_seconds=60, started_at=now - timedelta(minutes=i + 5),
                                 finished_at=now - timedelta(minutes=i)))
                s.commit()
            profiles = Profiles(profiles=[{"name": "cpu", "cpu_limit": 2, "mem_limit": "4G", "default": True},
                                          {"name": "gpu", "cpu_limit": 4, "mem_limit": "16G", "gpus": 1}])
            quotas = Quotas(sessions, profiles, defaults={"queued_jobs": 100000, "endpoints": 10})
            fair = FairShare(sessions, profiles)
            check = timed(lambda: quotas.check_job("quota-bench", ["bench-team"], "cpu", None, 0), args.checks)
            held = timed(quotas.held_by_owner, args.checks // 10)
            usage = timed(fair.recent_usage, args.checks // 10)
        finally:
            hub.stop()

    submit_p50, check_p50 = statistics.median(submit_times), statistics.median(check)
    print(f"POST /jobs (submit -> 201, through the proxy): {quantiles(submit_times)}")
    print(f"quota check at submission (Quotas.check_job): {quantiles(check)}")
    print(f"  share of the submit p50: {check_p50 / submit_p50 * 100:.2f} %")
    print(f"per dispatch round, with {args.history} ended jobs in the store: held_by_owner {quantiles(held)}; "
          f"fair share recent_usage {quantiles(usage)}")


if __name__ == "__main__":
    main()
