#!/bin/sh
# Installs the wheels beside this script (Notebench and its JupyterLab extension) into the venv
# /opt/notebench with the pins CI tests (constraints.txt, also beside it), and tini. Makes the
# account every Notebench pod runs as: jovyan, uid 1000, group users (gid 100).
#   install-notebench.sh PYTHON
set -eu
python="$1"
dist="$(dirname "$0")"
apt-get update
apt-get install -y --no-install-recommends tini
rm -rf /var/lib/apt/lists/*
useradd --uid 1000 --gid 100 --create-home --home-dir /home/jovyan --shell /bin/bash jovyan
# The hub and executor keep their files in /srv/notebench (a volume in their pods).
install -d -o 1000 -g 100 /srv/notebench
"$python" -m venv /opt/notebench
/opt/notebench/bin/pip install --no-cache-dir -c "$dist/constraints.txt" "$dist"/*.whl
