# The JupyterHub config file `notebench up` runs the hub with, and the hub pod of the Helm chart
# (NOTEBENCH_MODE=kubernetes). Settings live in notebench.hub.config and notebench.hub.kubernetes;
# in local mode the operator's own file (notebench up --config FILE) is loaded in between.
import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821 (provided by traitlets when JupyterHub loads this file)

if os.environ.get("NOTEBENCH_MODE") == "kubernetes":
    from notebench.hub.kubernetes import configure
    from notebench.hub.platform.chart_values import load_values

    configure(c, load_values(os.environ["NOTEBENCH_VALUES"]), os.environ)
else:
    from notebench.hub.config import apply_defaults, apply_services

    apply_defaults(c, os.environ["NOTEBENCH_DATA_DIR"])
    if os.environ.get("NOTEBENCH_USER_CONFIG"):
        load_subconfig(os.environ["NOTEBENCH_USER_CONFIG"])  # type: ignore[name-defined]  # noqa: F821 (traitlets' too)
    # Command-line flags win over the config file.
    if os.environ.get("NOTEBENCH_PORT"):
        c.Notebench.port = int(os.environ["NOTEBENCH_PORT"])
    if os.environ.get("NOTEBENCH_IP"):
        c.Notebench.ip = os.environ["NOTEBENCH_IP"]
    apply_services(c)
