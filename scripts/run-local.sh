#!/usr/bin/env bash
# Runs kube-log-gateway locally, end to end, with sample audit data flowing into
# a real local Elasticsearch. One command on a fresh Debian/Ubuntu machine:
#
#   scripts/run-local.sh              set up, build, start, send sample data, show it arrived
#   scripts/run-local.sh stop         stop the gateway (Elasticsearch keeps running)
#   scripts/run-local.sh stop --all   stop the gateway and Elasticsearch
#   scripts/run-local.sh status       is the gateway running? how many documents are there?
#
# What `start` (the default) does, each step idempotent, so running it twice works:
#   1. scripts/setup.sh                   apt packages (Java 17, Maven, libsystemd-dev, ...)
#   2. scripts/elasticsearch.sh start     Elasticsearch 8.19.21 on 127.0.0.1:${ES_PORT:-9200}
#   3. cargo build --release              (KLG_PROFILE=debug for a debug build)
#   4. kube-log-gateway certs             dev CA + server + client certs in .cache/local/certs (once)
#   5. .cache/local/gateway.yaml          listen 127.0.0.1:8443, admin 127.0.0.1:9464, mTLS
#   6. kube-log-gateway check-config
#   7. kube-log-gateway serve             in the background (restarted if already running);
#                                         log .cache/local/gateway.log, pid .cache/local/gateway.pid
#   8. waits for http://127.0.0.1:9464/readyz
#   9. POSTs tests/fixtures/audit-eventlist.json and a few generated EventList batches
#      with curl and the client certificate, as kube-apiserver would
#  10. waits until the documents are searchable and prints a query showing them
#
# Environment: KLG_PROFILE=release|debug, ES_PORT (default 9200),
#   KLG_LOCAL_LISTEN (default 127.0.0.1:8443), KLG_LOCAL_ADMIN (default 127.0.0.1:9464),
#   KLG_LOCAL_BATCHES (generated batches, default 3), KLG_LOCAL_BATCH_SIZE (events each, default 50).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

PROFILE="${KLG_PROFILE:-release}"
ES_PORT="${ES_PORT:-9200}"
ES="http://127.0.0.1:$ES_PORT"
LISTEN="${KLG_LOCAL_LISTEN:-127.0.0.1:8443}"
ADMIN="${KLG_LOCAL_ADMIN:-127.0.0.1:9464}"
BATCHES="${KLG_LOCAL_BATCHES:-3}"
BATCH_SIZE="${KLG_LOCAL_BATCH_SIZE:-50}"

LOCAL="$ROOT/.cache/local"
CERTS="$LOCAL/certs"
CONFIG="$LOCAL/gateway.yaml"
LOG="$LOCAL/gateway.log"
PID_FILE="$LOCAL/gateway.pid"
FIXTURE="$ROOT/tests/fixtures/audit-eventlist.json"

case "$PROFILE" in
  release) BIN="$ROOT/target/release/kube-log-gateway"; BUILD=(cargo build --release --bin kube-log-gateway) ;;
  debug) BIN="$ROOT/target/debug/kube-log-gateway"; BUILD=(cargo build --bin kube-log-gateway) ;;
  *) echo "run-local: KLG_PROFILE must be release or debug (got '$PROFILE')" >&2; exit 2 ;;
esac

t_start=$SECONDS
log() { printf 'run-local: %s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
die() { printf 'run-local: ERROR: %s\n' "$*" >&2; exit 1; }

# rustup's cargo lives in ~/.cargo/bin, which a non-login shell may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# ------------------------------------------------------------------ the gateway process

# The pid of the gateway this script started, or nothing. A pid only counts when
# that process is kube-log-gateway serving our config (pids get reused).
gateway_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 0
  pid="$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 0
  if tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$CONFIG" &&
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kube-log-gateway$'; then
    echo "$pid"
  fi
}

stop_gateway() {
  local pid deadline
  pid="$(gateway_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    log "gateway not running"
    return 0
  fi
  log "stopping gateway (pid $pid): SIGTERM, it flushes for up to shutdown.grace_period (20 s)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after 30 s, sending SIGKILL (what was not delivered stays in the spool)"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$PID_FILE"
  log "gateway stopped"
}

# ---------------------------------------------------------------------- Elasticsearch

es_count() { # $1: index pattern, $2: query JSON → the count (0 when there is no index yet)
  curl -s -m 10 -XPOST "$ES/$1/_refresh?ignore_unavailable=true&allow_no_indices=true" >/dev/null 2>&1 || true
  curl -s -m 10 -H 'Content-Type: application/json' \
    "$ES/$1/_count?ignore_unavailable=true&allow_no_indices=true" -d "{\"query\":$2}" |
    sed -n 's/.*"count":\([0-9]*\).*/\1/p'
}

wait_for_count() { # $1 index, $2 query, $3 expected, $4 what
  local n=0 deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    n="$(es_count "$1" "$2")"
    [[ "${n:-0}" -ge "$3" ]] && { log "$4: $n document(s) in Elasticsearch"; return 0; }
    sleep 1
  done
  tail -n 30 "$LOG" >&2 || true
  die "$4: only ${n:-0} of $3 documents in Elasticsearch after 60 s (gateway log: $LOG)"
}

# --------------------------------------------------------------------- sample data

# One audit event as kube-apiserver writes it (batch mode items carry no kind/apiVersion).
# $1 auditID, $2 verb, $3 user, $4 groups JSON, $5 objectRef JSON, $6 response code,
# $7 decision, $8 requestURI, $9 source IP
event_json() {
  local now
  now="$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"
  printf '{"level":"Metadata","auditID":"%s","stage":"ResponseComplete","requestURI":"%s","verb":"%s",' "$1" "$8" "$2"
  if [[ -n "$3" ]]; then
    printf '"user":{"username":"%s","groups":%s},' "$3" "$4"
  else
    printf '"user":{},'
  fi
  printf '"sourceIPs":["%s"],"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",' "$9"
  [[ -n "$5" ]] && printf '"objectRef":%s,' "$5"
  printf '"responseStatus":{"metadata":{},"code":%s},' "$6"
  printf '"requestReceivedTimestamp":"%s","stageTimestamp":"%s"' "$now" "$now"
  [[ -n "$7" ]] && printf ',"annotations":{"authorization.k8s.io/decision":"%s","authorization.k8s.io/reason":""}' "$7"
  printf '}'
}

# An EventList of $2 events with auditIDs "$1-<i>", cycling through the situations the
# README's queries look for.
event_list() {
  local prefix="$1" n="$2" i sa="system:serviceaccount:shop:deployer" authd='["system:authenticated"]'
  local sa_groups='["system:serviceaccounts","system:serviceaccounts:shop","system:authenticated"]'
  printf '{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
  for ((i = 0; i < n; i++)); do
    ((i > 0)) && printf ','
    case $((i % 6)) in
      0) event_json "$prefix-$i" list "$sa" "$sa_groups" \
           '{"resource":"pods","namespace":"shop","apiVersion":"v1"}' 200 allow \
           /api/v1/namespaces/shop/pods 10.0.0.7 ;;
      1) event_json "$prefix-$i" patch "$sa" "$sa_groups" \
           '{"resource":"deployments","namespace":"shop","name":"web","apiGroup":"apps","apiVersion":"v1"}' 200 allow \
           /apis/apps/v1/namespaces/shop/deployments/web 10.0.0.7 ;;
      2) event_json "$prefix-$i" create alice@example.com "$authd" \
           '{"resource":"pods","namespace":"shop","name":"web-0","apiVersion":"v1","subresource":"exec"}' 101 allow \
           '/api/v1/namespaces/shop/pods/web-0/exec?command=sh&stdin=true&tty=true' 192.0.2.10 ;;
      3) event_json "$prefix-$i" get "$sa" "$sa_groups" \
           '{"resource":"secrets","namespace":"kube-system","name":"bootstrap-token","apiVersion":"v1"}' 403 forbid \
           /api/v1/namespaces/kube-system/secrets/bootstrap-token 10.0.0.7 ;;
      4) event_json "$prefix-$i" list "" "" "" 401 "" /api/v1/secrets 203.0.113.5 ;;
      5) event_json "$prefix-$i" delete bob@example.com "$authd" \
           '{"resource":"deployments","namespace":"shop","name":"web","apiGroup":"apps","apiVersion":"v1"}' 200 allow \
           /apis/apps/v1/namespaces/shop/deployments/web 192.0.2.11 ;;
    esac
  done
  printf ']}'
}

post() { # $1: file → prints the HTTP status and the body
  curl -sS -m 30 --cacert "$CERTS/ca.crt" --cert "$CERTS/client.crt" --key "$CERTS/client.key" \
    -H 'Content-Type: application/json' --data-binary "@$1" \
    -w ' (HTTP %{http_code})' "https://$LISTEN/audit"
}

# ------------------------------------------------------------------------- commands

do_start() {
  step "1/9 system packages: scripts/setup.sh"
  bash scripts/setup.sh

  step "2/9 Elasticsearch: scripts/elasticsearch.sh start"
  ES_PORT="$ES_PORT" bash scripts/elasticsearch.sh start

  step "3/9 build: ${BUILD[*]}"
  "${BUILD[@]}"

  step "4/9 dev certificates: $CERTS"
  mkdir -p "$LOCAL"
  if [[ -f "$CERTS/ca.crt" && -f "$CERTS/server.key" && -f "$CERTS/client.key" ]]; then
    log "reusing the certificates in $CERTS (delete the directory to make new ones)"
  else
    "$BIN" certs --out "$CERTS"
  fi

  step "5/9 config: $CONFIG"
  cat >"$CONFIG" <<EOF
# Written by scripts/run-local.sh on every run; edit config/gateway.yaml for real use.
cluster_name: local
data_dir: $LOCAL/data
server:
  listen: $LISTEN
  audit_path: /audit
  tls:
    cert_file: $CERTS/server.crt
    key_file: $CERTS/server.key
    client_ca_file: $CERTS/ca.crt      # mTLS: clients need a certificate from the dev CA
admin:
  listen: $ADMIN                       # /healthz /readyz /metrics
spool:
  max_bytes: 268435456                 # 256 MiB is plenty on a laptop
elasticsearch:
  urls: ["$ES"]
  template:
    number_of_replicas: 0              # one node: replicas could never be assigned
    refresh_interval: 1s               # sample data searchable quickly
  batch:
    linger: 100ms
EOF
  log "written"

  step "6/9 check-config"
  "$BIN" check-config --config "$CONFIG" >/dev/null

  step "7/9 start: kube-log-gateway serve (log $LOG)"
  stop_gateway
  # setsid: the gateway outlives this script and ignores the terminal's Ctrl-C.
  # NO_COLOR: plain text in the log file.
  NO_COLOR=1 setsid "$BIN" serve --config "$CONFIG" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  log "started, pid $(cat "$PID_FILE")"

  step "8/9 wait for http://$ADMIN/readyz"
  local deadline=$((SECONDS + 30))
  until curl -sf -m 2 "http://$ADMIN/readyz" >/dev/null 2>&1; do
    if [[ -z "$(gateway_pid)" ]]; then
      tail -n 30 "$LOG" >&2 || true
      die "the gateway exited; see $LOG"
    fi
    ((SECONDS < deadline)) || { tail -n 30 "$LOG" >&2; die "not ready after 30 s; see $LOG"; }
    sleep 0.3
  done
  log "ready"

  step "9/9 send sample data with curl and the client certificate, like kube-apiserver"
  local run tmp i
  run="local-$(date -u +%Y%m%d%H%M%S)"
  tmp="$LOCAL/samples"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "tests/fixtures/audit-eventlist.json (8 events dated 2026-11-09): $(post "$FIXTURE")"
  for ((i = 1; i <= BATCHES; i++)); do
    event_list "$run-b$i" "$BATCH_SIZE" >"$tmp/batch-$i.json"
    log "generated batch $i ($BATCH_SIZE events, auditIDs $run-b$i-*, dated now): $(post "$tmp/batch-$i.json")"
  done

  step "wait until the documents are searchable"
  wait_for_count "audit-*" \
    '{"prefix":{"kubernetes.audit.auditID":"11111111-0000-0000-0000-00000000000"}}' 8 \
    "fixture (resent on every run; same _ids, so still 8)"
  wait_for_count "audit-*" "{\"prefix\":{\"kubernetes.audit.auditID\":\"$run-\"}}" \
    $((BATCHES * BATCH_SIZE)) "generated batches of this run"

  step "it arrived: who deleted the deployment shop/web?"
  local q='{"query":{"bool":{"filter":[{"term":{"kubernetes.audit.verb":"delete"}},{"term":{"kubernetes.audit.objectRef.resource":"deployments"}},{"term":{"kubernetes.audit.objectRef.name":"web"}}]}},"size":3,"sort":[{"@timestamp":"desc"}],"_source":["@timestamp","user.name","source.ip","event.outcome","kubernetes.audit.auditID"]}'
  echo "\$ curl -s '$ES/audit-*/_search?pretty' -H 'Content-Type: application/json' -d '$q'"
  curl -s "$ES/audit-*/_search?pretty&filter_path=hits.total,hits.hits._index,hits.hits._source" \
    -H 'Content-Type: application/json' -d "$q"
  echo
  echo "\$ curl -s '$ES/_cat/indices/audit-*,deadletter-*?v&h=index,docs.count&s=index'"
  curl -s "$ES/_cat/indices/audit-*,deadletter-*?v&h=index,docs.count&s=index"
  echo "\$ curl -s '$ES/audit-*/_count'"
  curl -s "$ES/audit-*/_count"
  echo

  cat <<EOF

run-local: done in $((SECONDS - t_start)) s. The gateway keeps running:
  webhook   https://$LISTEN/audit   (client cert: $CERTS/client.crt)
  admin     http://$ADMIN/metrics   /readyz /healthz
  log       $LOG
  send more curl --cacert $CERTS/ca.crt --cert $CERTS/client.crt --key $CERTS/client.key \\
              -H 'Content-Type: application/json' --data-binary @$FIXTURE https://$LISTEN/audit
  stop      scripts/run-local.sh stop          (Elasticsearch keeps running)
            scripts/run-local.sh stop --all    (Elasticsearch too)
EOF
}

do_status() {
  local pid
  pid="$(gateway_pid)"
  if [[ -n "$pid" ]]; then
    echo "gateway: running (pid $pid), readyz: $(curl -s -m 2 "http://$ADMIN/readyz" || echo 'no answer')"
  else
    echo "gateway: stopped"
  fi
  bash scripts/elasticsearch.sh status || true
  curl -s -m 5 "$ES/_cat/indices/audit-*,deadletter-*?v&h=index,docs.count&s=index" 2>/dev/null || true
}

case "${1:-start}" in
  start) do_start ;;
  stop)
    stop_gateway
    if [[ "${2:-}" == "--all" ]]; then
      ES_PORT="$ES_PORT" bash scripts/elasticsearch.sh stop
    else
      log "Elasticsearch keeps running on $ES (scripts/run-local.sh stop --all stops it too)"
    fi
    ;;
  status) do_status ;;
  *)
    echo "usage: $0 [start] | stop [--all] | status" >&2
    exit 2
    ;;
esac
