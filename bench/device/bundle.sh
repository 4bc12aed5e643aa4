#!/usr/bin/env bash
# Packs what a benchmark run on the device machine needs and its image lacks, since that machine
# reaches no network: Notebench's Python dependencies as cp312 wheels (unpacked and xz'd together,
# a third smaller than the wheels themselves, to fit the 64 MiB a call carries), Node.js and
# configurable-http-proxy. bench/device/run.sh installs them there.
#
#   bench/device/bundle.sh DIR     # DIR: a folder .git/info/exclude ignores, e.g. .devrun
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: bench/device/bundle.sh DIR}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# onetimepass (NativeAuthenticator's) is on PyPI as an sdist only: its pure-Python wheel is built here.
grep -v -e '^#' -e '^onetimepass$' bench/device/packages.txt > "$tmp/packages.txt"
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -c constraints.txt -r "$tmp/packages.txt" -d "$tmp/wheels"
.venv/bin/python -m pip wheel -q --no-deps -c constraints.txt onetimepass -w "$tmp/wheels"

mkdir "$tmp/unpacked"
for wheel in "$tmp"/wheels/*.whl; do
  name=$(basename "$wheel")
  mkdir "$tmp/unpacked/$name"
  .venv/bin/python -m zipfile -e "$wheel" "$tmp/unpacked/$name"
done
tar cf - -C "$tmp/unpacked" . | xz -T0 -9 > "$out/wheels.tar.xz"
xz -T0 -9 < "$(command -v node)" > "$out/node.xz"
tar cJf "$out/chp.tar.xz" -C .venv node_modules
du -ch "$out"/wheels.tar.xz "$out"/node.xz "$out"/chp.tar.xz
