"""Notebench: the JupyterHub side — configuration, spawners, profiles, services and the CLI."""
