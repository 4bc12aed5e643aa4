"""Notebench for JupyterLab: the Jobs and Models panels and their server extension."""

from .handlers import NotebenchExtension, setup_handlers

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyterlab-notebench"}]


def _jupyter_server_extension_points():
    return [{"module": "jupyterlab_notebench"}]


def _load_jupyter_server_extension(server_app):
    setup_handlers(server_app.web_app, NotebenchExtension(parent=server_app))
    server_app.log.info("jupyterlab_notebench: /notebench/ handlers loaded")
