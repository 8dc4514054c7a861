#!/usr/bin/env bash
# A real one-node Ray cluster for the tests marked `ray` (tests/e2e/test_ray_e2e.py).
#
#   .ci/ray.sh up     install ray[default] when missing, start a head on 127.0.0.1 with two
#                     (logical) GPUs, wait until its Jobs API answers, print one line
#   .ci/ray.sh down   stop it
#
# A failing `up` says why and exits 0: the ray tests then skip with a reason, CI goes on.
# The Jobs API (the dashboard, 127.0.0.1:8265) is Ray's own listener, bound to loopback;
# Backprop opens none.
set -uo pipefail

ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
PY="${PYTHON:-python}"
WAIT_S="${RAY_UP_WAIT_S:-90}"

answers() {
  "$PY" - "$ADDRESS" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/api/version", timeout=2).read()
EOF
}

up() {
  if answers; then
    echo "ray: a head already answers at $ADDRESS"
    return 0
  fi
  if ! "$PY" -c "import ray.job_submission" >/dev/null 2>&1; then
    if ! "$PY" -m pip install -q "ray[default]>=2.40" >/dev/null 2>&1; then
      echo "ray: could not install ray[default]; the ray tests will skip"
      return 0
    fi
  fi
  local bin
  bin="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")/ray"
  [[ -x "$bin" ]] || bin="$(command -v ray || true)"
  if [[ -z "$bin" ]]; then
    echo "ray: the ray command is missing after install; the ray tests will skip"
    return 0
  fi
  local started=$SECONDS log
  log="$(mktemp)"
  if ! "$bin" start --head --node-ip-address=127.0.0.1 --num-cpus=2 --num-gpus=2 \
      --dashboard-host=127.0.0.1 --disable-usage-stats >"$log" 2>&1; then
    echo "ray: ray start failed ($(tail -n 1 "$log")); the ray tests will skip"
    rm -f "$log"
    return 0
  fi
  rm -f "$log"
  while ((SECONDS - started < WAIT_S)); do
    if answers; then
      echo "ray: head up, Jobs API at $ADDRESS after $((SECONDS - started)) s"
      return 0
    fi
    sleep 1
  done
  echo "ray: the Jobs API did not answer within ${WAIT_S} s; the ray tests will skip"
  return 0
}

down() {
  local bin
  bin="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")/ray"
  [[ -x "$bin" ]] || bin="$(command -v ray || true)"
  [[ -n "$bin" ]] && "$bin" stop --force >/dev/null 2>&1
  echo "ray: stopped"
  return 0
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
