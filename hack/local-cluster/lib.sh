# shellcheck shell=bash
# Shared helpers for hack/local-cluster.sh and hack/images.sh: logging with timings,
# daemon bookkeeping by PID file, and polling waits with deadlines.

: "${RAFTKV_CACHE_DIR:=${HOME}/.cache/raftkv}"
export RAFTKV_CACHE_DIR

log() { printf '[local-cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# step NAME CMD...: run CMD, print how long it took (the brief wants per-step timings).
step() {
  local name=$1 t0=$SECONDS rc=0
  shift
  log "==> ${name}"
  "$@" || rc=$?
  if ((rc != 0)); then
    log "<== ${name} FAILED (rc=${rc}) after $((SECONDS - t0))s"
    return "$rc"
  fi
  log "<== ${name}: $((SECONDS - t0))s"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS CMD...: poll CMD once a second until it succeeds.
# Readiness is always a real check; the sleep is only the polling interval.
wait_for() {
  local desc=$1 timeout=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for: ${desc}"
      return 1
    fi
    sleep 1
  done
}

# --- daemons ------------------------------------------------------------------
# Every daemon we start gets ${PID_DIR}/NAME.pid holding its PID and ${LOG_DIR}/NAME.log.
# There is no systemd here (PID 1 is process_api), so this is our process supervisor.

pid_of() {
  local f="${PID_DIR}/$1.pid"
  [[ -s $f ]] || return 1
  cat "$f"
}

# is_running NAME: the recorded PID is alive and still runs the binary we started
# (guards against the PID having been reused by something else after a reboot/kill).
is_running() {
  local pid exe
  pid=$(pid_of "$1") || return 1
  [[ -d /proc/${pid} ]] || return 1
  exe=$(readlink "/proc/${pid}/exe" 2>/dev/null) || return 1
  [[ $(basename "${exe% (deleted)}") == "$(cat "${PID_DIR}/$1.exe" 2>/dev/null)" ]]
}

# start_daemon NAME BINARY ARGS...: start in its own session so it outlives this script
# and is not hit by signals sent to our process group.
start_daemon() {
  local name=$1
  shift
  if is_running "$name"; then
    log "${name} already running (pid $(pid_of "$name"))"
    return 0
  fi
  mkdir -p "$PID_DIR" "$LOG_DIR"
  basename "$1" >"${PID_DIR}/${name}.exe"
  setsid "$@" </dev/null >>"${LOG_DIR}/${name}.log" 2>&1 &
  echo $! >"${PID_DIR}/${name}.pid"
  log "started ${name} (pid $!), log: ${LOG_DIR}/${name}.log"
}

# stop_daemon NAME: SIGTERM, wait up to 30s, then SIGKILL; only ever the recorded PID.
stop_daemon() {
  local name=$1 pid deadline
  if ! is_running "$name"; then
    rm -f "${PID_DIR}/${name}.pid" "${PID_DIR}/${name}.exe"
    return 0
  fi
  pid=$(pid_of "$name")
  log "stopping ${name} (pid ${pid})"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 30))
  while [[ -d /proc/${pid} ]] && ((SECONDS < deadline)); do sleep 0.2; done
  if [[ -d /proc/${pid} ]]; then
    log "${name} ignored SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while [[ -d /proc/${pid} ]]; do sleep 0.1; done
  fi
  rm -f "${PID_DIR}/${name}.pid" "${PID_DIR}/${name}.exe"
}
