#!/usr/bin/env bash
# Download, here, every wheel the GPU machine lacks, for its Python 3.12 on x86-64, and build
# this project's own wheel beside them, so that `bench/gpu_check.sh` installs from them there
# with no package index.
#
#   bash bench/gpu_wheels.sh [DIR]        # default: .gpu-wheels/ (git-ignored)
#
# Then carry the folder to the GPU machine with the working tree (the device tool's `carry`:
# [".gpu-wheels"]; it counts towards the 64 MiB that travel). The machine has torch, psutil,
# nvidia-ml-py, rich and pytest already; what the project needs beyond them is textual,
# textual-plotext, watchfiles and tomli-w (and what those need), plus pytest-asyncio for the
# suite's ini option. pip resolves the whole closure for 3.12, so the wheels of anything the
# machine already has come along too (small); installing there with `--no-index` keeps every
# installed package that satisfies the requirement, torch included.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-$ROOT/.gpu-wheels}
PY=${PYTHON:-python3}
LIMIT_MIB=${GPU_WHEELS_LIMIT_MIB:-24}

rm -rf "$DIR"
mkdir -p "$DIR"

# The project's requirements, read from pyproject.toml so this list cannot drift from it.
mapfile -t REQS < <("$PY" - "$ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
print(*project["dependencies"], sep="\n")
EOF
)
REQS+=("pytest-asyncio>=0.23")

PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux_2_5_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
done

echo "downloading for CPython 3.12, x86-64: ${REQS[*]}"
"$PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    "${PLATFORMS[@]}" --platform any -d "$DIR" "${REQS[@]}"

echo "building backprop's own wheel"
"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$DIR" "$ROOT"

count=$(find "$DIR" -name '*.whl' | wc -l)
bytes=$(du -sb "$DIR" | cut -f1)
echo "$count wheels, $((bytes / 1024)) KiB in $DIR:"
find "$DIR" -name '*.whl' -printf '  %f\n' | sort
if ((bytes > LIMIT_MIB * 1024 * 1024)); then
    echo "gpu_wheels: $((bytes / 1048576)) MiB is over the ${LIMIT_MIB} MiB kept for the carry" >&2
    exit 1
fi
