#!/usr/bin/env bash
# Local AWS emulator for tap: moto server from a private venv. No Docker needed.
#
#   localstack/emulator.sh install          create/refresh the venv (idempotent)
#   localstack/emulator.sh start [--timing|--faults] start on 127.0.0.1:$TAP_EMULATOR_PORT (default 4566)
#   localstack/emulator.sh start --localstack      LocalStack community instead of moto (no Docker;
#                                           needs a Python >= 3.12: $PYTHON, python3.13, python3.12,
#                                           python3; exit 3 saying why when there is none)
#   localstack/emulator.sh stop             stop the server this script started
#   localstack/emulator.sh status           exit 0 when it answers
#
# --timing starts localstack/timing_server.py instead of the plain server: the same moto,
# with per-service latency and RDS / NAT / CloudFront transitions that take real seconds
# (see that file for its environment variables). --faults is the timing mode with faults.py in
# front: throttling, 503, lost responses, eventual consistency, lingering dependencies, per
# TAP_FAULTS (e.g. "seed=1,throttle=0.07,unavailable=0.05,lost=0.08,consistency=2,linger=3").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TAP_EMULATOR_CACHE:-$here/.cache}
venv=$cache/venv
port=${TAP_EMULATOR_PORT:-4566}
host=127.0.0.1
pidfile=$cache/moto-$port.pid
logfile=$cache/moto-$port.log
moto_pin="moto[server]==5.2.5"

install() {
  mkdir -p "$cache"
  local stamp=$venv/.tap-installed
  if [[ -f $stamp && $(cat "$stamp") == "$moto_pin" ]]; then
    return 0
  fi
  local py=${PYTHON:-python3}
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$moto_pin"
  echo "$moto_pin" >"$stamp"
}

# LocalStack community, from PyPI, run without Docker (python -m localstack.runtime.main). It has
# S3, KMS, IAM, STS, SNS, Secrets Manager, EC2, Logs and SSM; RDS, CloudFront and Auto Scaling
# are the paid edition's. Its S3 answers DeleteObject If-Match 501 NotImplemented and PutObject
# If-Match on a missing key 404 (tap copes: README, "Team state in S3"). The pins: its 2026.3.0
# release with the cbor2, pyOpenSSL and cryptography versions it runs with.
ls_pins=("localstack-core[runtime]==2026.3.0" "cbor2<6" "pyopenssl==25.1.0" "cryptography>=45,<46" "service_identity")
ls_venv=$cache/localstack-venv

# A Python >= 3.12 (LocalStack's code does not parse on 3.11), or nothing.
python312() {
  local py
  for py in ${PYTHON:-} python3.14 python3.13 python3.12 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
      "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$py"
      return 0
    fi
  done
  return 1
}

install_localstack() {
  local py
  if ! py=$(python312); then
    echo "skip: LocalStack community needs Python >= 3.12; found $(python3 --version 2>&1 || echo no python3)" >&2
    return 3
  fi
  mkdir -p "$cache"
  local stamp=$ls_venv/.tap-installed
  if [[ -f $stamp && $(cat "$stamp") == "${ls_pins[*]}" ]]; then
    return 0
  fi
  "$py" -m venv "$ls_venv"
  "$ls_venv/bin/pip" install --quiet --disable-pip-version-check "${ls_pins[@]}"
  echo "${ls_pins[*]}" >"$stamp"
}

health_path=/moto-api/

answers() {
  python3 - "$host" "$port" "$health_path" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}{sys.argv[3]}", timeout=2).read()
except Exception:
    sys.exit(1)
PY
}

# Whether nothing listens on the port. With SO_REUSEADDR, as the servers bind, so that sockets of
# a just-stopped emulator in TIME_WAIT do not count; on Linux a listening socket still does.
port_free() {
  python3 - "$host" "$port" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

start() {
  local mode=plain
  [[ ${1:-} == --timing ]] && mode=timing
  [[ ${1:-} == --faults ]] && mode=faults
  if [[ ${1:-} == --localstack ]]; then
    mode=localstack
    health_path=/_localstack/health
    install_localstack || return $?
  else
    install
  fi
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && answers; then
    echo "emulator already running on http://$host:$port (pid $(cat "$pidfile"))"
    return 0
  fi
  # A port held by a process this script did not start: the new server would fail to bind while
  # the old one answers, and the tests would run against an emulator of unknown mode and rules.
  # A tap emulator of another checkout is stopped (stop_foreign); anything else is an error.
  port_free || stop_foreign >&2
  if ! port_free; then
    echo "port $port on $host is in use by a process this script did not start and that is no" \
      "tap emulator (ss -ltnp 'sport = :$port' names it): stop it or use another port" >&2
    return 1
  fi
  export MOTO_IAM_LOAD_MANAGED_POLICIES=true
  if [[ $mode == localstack ]]; then
    GATEWAY_LISTEN=$host:$port SERVICES=s3,kms,iam,sts,sns,secretsmanager,ec2,logs,ssm \
      LOCALSTACK_VOLUME_DIR=$cache/localstack-$port \
      nohup "$ls_venv/bin/python" -m localstack.runtime.main >"$logfile" 2>&1 &
  elif [[ $mode == timing ]]; then
    nohup "$venv/bin/python" "$here/timing_server.py" --host "$host" --port "$port" >"$logfile" 2>&1 &
  elif [[ $mode == faults ]]; then
    nohup "$venv/bin/python" "$here/timing_server.py" --host "$host" --port "$port" --faults >"$logfile" 2>&1 &
  else
    # moto behind the same thin wrapper with no timing: it serializes RDS calls, which moto's
    # threaded server does not survive concurrently (see timing_server.py).
    nohup "$venv/bin/python" "$here/timing_server.py" --host "$host" --port "$port" --plain >"$logfile" 2>&1 &
  fi
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if answers && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "emulator ($mode) listening on http://$host:$port (pid $(cat "$pidfile"), log $logfile)"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "emulator exited during start; its log:" >&2
      cat "$logfile" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "emulator did not answer on port $port within 60 s; log: $logfile" >&2
  return 1
}

stop() {
  if [[ -f $pidfile ]]; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "emulator on port $port stopped"
  else
    echo "no emulator started by this script on port $port"
  fi
  stop_foreign
}

# A tap emulator of another checkout (its pid file is in that checkout's cache) still listening
# on the port: stopped too, so that `start` can bind. Any other process on the port is left alone
# and `start` says so.
stop_foreign() {
  command -v ss >/dev/null || return 0
  local pid
  for pid in $(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE 'timing_server\.py|localstack\.runtime\.main'; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      echo "a tap emulator of another checkout on port $port (pid $pid) stopped"
    fi
  done
}

case ${1:-} in
  install) install ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 install | start [--timing|--faults|--localstack] | stop | status" >&2; exit 2 ;;
esac
