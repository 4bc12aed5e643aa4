#!/usr/bin/env bash
# On the device machine: installs what bench/device/bundle.sh packed into the image's Python (the
# one with PyTorch), then Notebench from this working tree, then runs the command given.
#
#   bash bench/device/run.sh DIR COMMAND...   # DIR: the bundle, carried with the call
#   e.g. bash bench/device/run.sh .devrun python3 bench/executor/bench_distributed.py --runs 2
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle=${1:?usage: bench/device/run.sh DIR COMMAND...}
shift
started=$(date +%s)
nproc; grep -m1 "model name" /proc/cpuinfo
python3 - "$bundle" <<'PY'
import lzma, os, shutil, sys, tarfile, zipfile

bundle = sys.argv[1]
os.makedirs("/opt/nb/bin", exist_ok=True)
with lzma.open(f"{bundle}/node.xz") as src, open("/opt/nb/bin/node", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod("/opt/nb/bin/node", 0o755)
tarfile.open(f"{bundle}/chp.tar.xz").extractall("/opt/nb")
tarfile.open(f"{bundle}/wheels.tar.xz").extractall("/tmp/unpacked")
# Zip each wheel again (pip installs wheels, not folders); RECORD's hashes are of the files, so they hold.
os.makedirs("/tmp/wheels", exist_ok=True)
for name in sorted(os.listdir("/tmp/unpacked")):
    root = os.path.join("/tmp/unpacked", name)
    with zipfile.ZipFile(os.path.join("/tmp/wheels", name), "w", zipfile.ZIP_STORED) as wheel:
        for folder, _, files in os.walk(root):
            for f in files:
                wheel.write(os.path.join(folder, f), os.path.relpath(os.path.join(folder, f), root))
PY
export PATH=/opt/nb/bin:$PATH
prefix=$(python3 -c 'import sys; print(sys.prefix)')
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir /tmp/wheels/*.whl || exit 4
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir . || exit 5
# Compile here, as root: jobs run as users who cannot write __pycache__ in this site-packages, so
# without .pyc files every import in their kernels and Dask workers compiles from source again.
python3 -m compileall -q -j 0 "$site" > /dev/null 2>&1
ln -sf /opt/nb/node_modules/.bin/configurable-http-proxy "$prefix/bin/configurable-http-proxy"
mkdir -p /srv && chmod 755 /srv
python3 -c 'import sklearn, mlflow, distributed, notebench.executor.app' || exit 6
echo "set-up took $(( $(date +%s) - started )) s"
PYTHONUNBUFFERED=1 "$@"
