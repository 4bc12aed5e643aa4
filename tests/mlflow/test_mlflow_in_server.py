"""A notebook in a user's server logs to MLflow with no set-up, as that user."""

import requests

from tests.support.kernels import execute, start_kernel


def test_mlflow_log_metric_in_a_notebook_just_works(hub):
    token = hub.new_user("ml-user")
    hub.spawn("ml-user", "cpu", token=token)
    try:
        kernel = start_kernel(hub.url, "ml-user", token)
        printed = execute(
            hub.url,
            "ml-user",
            token,
            kernel,
            "import mlflow\n"
            "mlflow.set_experiment('from-notebook')\n"
            "with mlflow.start_run() as run:\n"
            "    mlflow.log_param('alpha', 0.5)\n"
            "    mlflow.log_metric('rmse', 0.25)\n"
            "print(run.info.run_id)\n",
            timeout=180,
        )
        run_id = printed.strip().splitlines()[-1]
        # The run is in the hub's MLflow, owned by ml-user, readable with their token.
        r = requests.get(
            f"{hub.url}/services/mlflow/api/2.0/mlflow/runs/get",
            params={"run_id": run_id},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        data = r.json()["run"]["data"]
        assert {m["key"]: m["value"] for m in data["metrics"]} == {"rmse": 0.25}
        assert {p["key"]: p["value"] for p in data["params"]} == {"alpha": "0.5"}
        # The experiment the notebook created is ml-user's: others may read it, not change it.
        experiment_id = r.json()["run"]["info"]["experiment_id"]
        other = hub.new_user("ml-other")

        def rename(as_token, new_name):
            return requests.post(
                f"{hub.url}/services/mlflow/api/2.0/mlflow/experiments/update",
                json={"experiment_id": experiment_id, "new_name": new_name},
                headers={"Authorization": f"Bearer {as_token}"},
                timeout=60,
            )

        assert rename(other, "hijacked").status_code == 403
        assert rename(token, "from-notebook-renamed").status_code == 200
    finally:
        hub.stop_server("ml-user")
