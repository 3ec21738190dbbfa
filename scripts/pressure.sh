#!/usr/bin/env bash
# Saturate this machine the way a busy node is saturated, for the pressure step of
# scripts/test.sh (and by hand, around anything you want to see under load):
#
#   scripts/pressure.sh start    CPU hogs (PRESSURE_HOGS, default 2 per core) at normal
#                                priority, and one disk writer (PRESSURE_DISK=0 turns it
#                                off) that rewrites and fsyncs a PRESSURE_DISK_MB file
#   scripts/pressure.sh stop     kills them all (idempotent)
#   scripts/pressure.sh status   how many are running
#
# A node agent gets the CPU that is left; the reliability tests must keep their exact
# counts with every core busy. The hogs are plain shell loops, so nothing is installed.
set -euo pipefail

STATE_DIR="${PRESSURE_STATE_DIR:-${TMPDIR:-/tmp}/klg-pressure}"
PIDS="$STATE_DIR/pids"
cores=$(nproc)
HOGS="${PRESSURE_HOGS:-$((cores * 2))}"
DISK="${PRESSURE_DISK:-1}"
DISK_MB="${PRESSURE_DISK_MB:-256}"

log() { printf 'pressure: %s\n' "$*"; }

start() {
  stop >/dev/null
  mkdir -p "$STATE_DIR"
  : >"$PIDS"
  for ((i = 0; i < HOGS; i++)); do
    # setsid: its own process group, so `stop` kills the loop and nothing else.
    setsid bash -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
    echo $! >>"$PIDS"
  done
  if [[ "$DISK" == 1 ]]; then
    setsid bash -c "while :; do dd if=/dev/zero of='$STATE_DIR/disk-writer.bin' bs=1M count=$DISK_MB conv=fsync status=none; done" \
      </dev/null >/dev/null 2>&1 &
    echo $! >>"$PIDS"
  fi
  log "started $HOGS CPU hogs on $cores cores$([[ "$DISK" == 1 ]] && echo " and a disk writer (${DISK_MB} MB, fsync)")"
}

stop() {
  local n=0
  if [[ -f "$PIDS" ]]; then
    while read -r pid; do
      [[ -n "$pid" ]] || continue
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
      n=$((n + 1))
    done <"$PIDS"
    rm -f "$PIDS" "$STATE_DIR/disk-writer.bin"
  fi
  log "stopped $n"
}

status() {
  local n=0
  if [[ -f "$PIDS" ]]; then
    while read -r pid; do
      [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && n=$((n + 1))
    done <"$PIDS"
  fi
  log "$n running"
  ((n > 0))
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
