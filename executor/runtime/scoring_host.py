"""A scoring server process started before its model is known (``python -m notebench.executor.runtime.scoring_host``).

It serves with MLflow's own pyfunc scoring server (``mlflow.pyfunc.scoring_server``: a FastAPI
app, run by uvicorn), as ``mlflow models serve --env-manager local`` does, in this environment.
Importing MLflow, pandas and the model flavours takes seconds; a deploy would wait for that, so
the local endpoint backend starts these processes ahead of time (as the owner's OS account) and
hands one its model when a deploy comes:

1. argv: ``IDLE_SECONDS MODULE...``: import the modules, print ``{"event": "ready"}``;
2. read one JSON line on stdin: ``{"model_uri", "socket", "log", "env"}`` (nothing within
   IDLE_SECONDS: exit, so unused warm processes do not pile up);
3. write everything to the log file, load the model from MLflow (``env`` has the tracking URL
   and the owner's token) and serve it on the Unix socket until SIGTERM.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys


def main() -> None:
    idle_seconds, modules = int(sys.argv[1]), sys.argv[2:]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional flavour that is not installed
            pass
    signal.alarm(idle_seconds)  # SIGALRM's default action ends the process
    print(json.dumps({"event": "ready"}), flush=True)
    line = sys.stdin.readline()
    signal.alarm(0)
    if not line:  # the executor went away before using this process
        return
    spec = json.loads(line)
    os.environ.update(spec["env"])
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    # From now on the executor may restart: nothing may depend on its pipes.
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)

    import uvicorn
    from mlflow.pyfunc import scoring_server

    print(f"loading {spec['model_uri']}", flush=True)
    model = scoring_server.load_model_with_mlflow_config(spec["model_uri"])
    app = scoring_server.init(model)
    # The router keeps connections open between requests: keep them longer than uvicorn's 5 s.
    uvicorn.run(app, uds=spec["socket"], access_log=False, timeout_keep_alive=300, log_level="info")


if __name__ == "__main__":
    main()
