#!/usr/bin/env bash
# A real, local Elasticsearch for development and tests.
#
#   scripts/elasticsearch.sh start|stop|status|wipe|logs
#
#   start   fetch (once) + start, wait until the cluster is yellow; "already running" is fine
#   stop    SIGTERM, SIGKILL after 30 s, wait for the process to be gone; stopped is fine
#   status  prints running/stopped and the node's version; exit 0 running, 3 stopped
#   wipe    stop, then delete the instance's data directory
#   logs    print the tail of the instance's Elasticsearch log (ES_LOG_LINES, default 100)
#
# A cluster of several nodes on loopback (plain HTTP only, see scripts/lib/es-cluster.sh):
#
#   scripts/elasticsearch.sh cluster-start|cluster-stop|cluster-status|cluster-wipe
#   scripts/elasticsearch.sh kill-node N|start-node N        (N = 1 .. ES_CLUSTER_NODES)
#
#   cluster-start   start every node that is not running (in parallel), wait until the
#                   cluster has all of them and is yellow or green; "already running" is fine
#   cluster-stop    stop every node (SIGTERM, SIGKILL after 30 s); stopped is fine
#   cluster-status  one line per node, then the cluster's health; exit 0 when every node
#                   runs, 3 otherwise
#   cluster-wipe    stop every node, then delete every node's data directory
#   kill-node N     SIGKILL node N (a crash: no shard hand-off, no goodbye to the master)
#   start-node N    start node N again and wait until it is back in the cluster
#
# Environment:
#   ES_SERVER     which server: es8 (default), es9, os2 or os3 (see scripts/lib/es-dist.sh)
#   ES_VERSION    the version of that server (default: its pin below)
#   ES_PORT       HTTP port on 127.0.0.1 (default 9200 for es8, 9210 es9, 9220 os2,
#                 9230 os3); the transport port is ES_PORT+100.
#                 Each port is its own instance, so ES_PORT=9200 and ES_PORT=9250 can run
#                 side by side.
#   ES_HEAP       JVM heap, -Xms = -Xmx (default 512m)
#   ES_JAVA_OPTS  extra JVM options, appended after the heap options
#   ES_JAVA_HOME  the Java to use (default: Java 17 for es8 and os2, 21+ for es9 and os3,
#                 found in /usr/lib/jvm)
#   ES_START_TIMEOUT  seconds until a started node must be healthy (default 120; 240 for
#                 the cluster commands, whose JVMs start side by side)
#   KLG_CACHE_DIR where the distribution and instances live, see below
#
# Described beside their code: secured mode (ES_SECURE=1: HTTPS, basic auth, bearer
# tokens, API keys; OpenSearch's security plugin for os2) in scripts/lib/es-secure.sh;
# cluster mode (cluster-*, kill-node, start-node; es8 only) in scripts/lib/es-cluster.sh;
# what runs (each server's integ-test-zip from Maven Central: what it has and lacks, the
# servers and their pins) in scripts/lib/es-dist.sh. Plain HTTP unless ES_SECURE=1.
#
# Cache layout (KLG_CACHE_DIR):
#   default: /var/cache/kube-log-gateway when run as root, else $HOME/.cache/kube-log-gateway.
#   Root's default is not under /root because Elasticsearch refuses to run as root: it
#   runs as the system user `klg-es` (created here), which cannot enter /root (mode 700).
#     downloads/<server>-<v>.zip            the verified zip (server = elasticsearch|opensearch)
#     dist/<server>-<v>/                    the unpacked distribution (read-only, world-readable)
#     dist/<server>-<v>+analysis-<hash>/    secured mode's: hard links + scripts/es-analysis-plugin
#     m2/                                   Maven's local repository (plugins only)
#     instances/<port>/{config,data,logs,tmp,es.pid}   one per ES_PORT, owned by the runtime user
#   `config` is regenerated on every start from the distribution + the settings below,
#   `data` survives restarts until `wipe`. After changing ES_VERSION to an OLDER version,
#   `wipe` first: Elasticsearch cannot read data written by a newer version.
set -euo pipefail

# PINS: the one place each server's version is written.
ES_SERVER="${ES_SERVER:-es8}"
case "$ES_SERVER" in
  es8) DIST=elasticsearch PIN=8.19.21 DEFAULT_PORT=9200 ;;
  es9) DIST=elasticsearch PIN=9.5.4 DEFAULT_PORT=9210 ;;
  # Secured (ES_SECURE=1): 2.19.4, whose security plugin Maven Central serves (2.19.6 has none).
  os2) DIST=opensearch PIN=2.19.6 SECURE_PIN=2.19.4 DEFAULT_PORT=9220 ;;
  os3) DIST=opensearch PIN=3.8.0 DEFAULT_PORT=9230 ;;
  *)
    printf 'elasticsearch: ERROR: ES_SERVER must be es8, es9, os2 or os3 (got %s)\n' "$ES_SERVER" >&2
    exit 2
    ;;
esac
[[ "${ES_SECURE:-0}" =~ ^(1|true|yes|on)$ && -n "${SECURE_PIN:-}" ]] && PIN="$SECURE_PIN"
ES_VERSION="${ES_VERSION:-$PIN}"
if [[ "$DIST" == opensearch ]]; then
  GROUP=org.opensearch.distribution.integ-test-zip ENV_PREFIX=OPENSEARCH
else
  GROUP=org.elasticsearch.distribution.integ-test-zip ENV_PREFIX=ES
fi
case "${1:-}" in
  cluster-* | kill-node | start-node) CLUSTER_CMD=1 ;;
  *) CLUSTER_CMD=0 ;;
esac
if ((CLUSTER_CMD)); then
  [[ "$ES_SERVER" == es8 ]] || { echo "elasticsearch: ERROR: the cluster commands run es8 only" >&2; exit 2; }
  ES_PORT="${ES_PORT:-9201}"
  START_TIMEOUT="${ES_START_TIMEOUT:-240}"
else
  ES_PORT="${ES_PORT:-$DEFAULT_PORT}"
  START_TIMEOUT="${ES_START_TIMEOUT:-120}" # seconds until the cluster must be yellow
fi
ES_HEAP="${ES_HEAP:-512m}"
ES_CLUSTER_NODES="${ES_CLUSTER_NODES:-3}"
STOP_TIMEOUT=30   # seconds between SIGTERM and SIGKILL
ES_USER=klg-es

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $EUID -eq 0 ]]; then
  CACHE_DIR="${KLG_CACHE_DIR:-/var/cache/kube-log-gateway}"
else
  CACHE_DIR="${KLG_CACHE_DIR:-$HOME/.cache/kube-log-gateway}"
fi

log() { printf 'elasticsearch: %s\n' "$*"; }
die() { printf 'elasticsearch: ERROR: %s\n' "$*" >&2; exit 1; }

if ! [[ "$ES_PORT" =~ ^[1-9][0-9]*$ ]] || ((ES_PORT < 1024 || ES_PORT + 100 > 65535)); then
  die "ES_PORT must be a number between 1024 and 65435 (got '$ES_PORT')"
fi
if ! [[ "$ES_CLUSTER_NODES" =~ ^[1-9][0-9]?$ ]] || ((ES_CLUSTER_NODES + ES_PORT + 99 > 65535)); then
  die "ES_CLUSTER_NODES must be a number between 1 and 99 (got '$ES_CLUSTER_NODES')"
fi
# Cluster mode: node 1's HTTP port; set by the cluster commands, empty otherwise.
CLUSTER_FIRST_PORT=""
TRANSPORT_PORT=$((ES_PORT + 100))

ZIP="$CACHE_DIR/downloads/$DIST-$ES_VERSION.zip"
ES_HOME="$CACHE_DIR/dist/$DIST-$ES_VERSION"
INST="$CACHE_DIR/instances/$ES_PORT"
PID_FILE="$INST/es.pid"
ES_PASSWORD="${ES_PASSWORD:-klg-elastic-pw}"
SECURE_MARKER="# klg-secure-mode"
ADMIN_USER=elastic
[[ "$DIST" == opensearch ]] && ADMIN_USER=admin
# shellcheck source=lib/opensearch-security.sh
source "$SCRIPT_DIR/lib/opensearch-security.sh"

# Whether this instance runs (or is about to run) with security on. `start` takes it
# from ES_SECURE; everything else from the config the running instance was started with.
requested_secure() { [[ "${ES_SECURE:-0}" =~ ^(1|true|yes|on)$ ]]; }
instance_secure() { grep -qxF "$SECURE_MARKER" "$INST/config/$DIST.yml" 2>/dev/null; }
set_url() {
  if [[ "$1" == secure ]]; then URL="https://127.0.0.1:$ES_PORT"; else URL="http://127.0.0.1:$ES_PORT"; fi
}
if requested_secure; then set_url secure; else set_url plain; fi

# ---------------------------------------------------------------------------- helpers

# Run a command as the user Elasticsearch runs as (itself when we are not root).
as_es_user() {
  if [[ $EUID -eq 0 ]]; then
    runuser -u "$ES_USER" -- "$@"
  else
    "$@"
  fi
}

ensure_user() {
  [[ $EUID -eq 0 ]] || return 0
  id -u "$ES_USER" >/dev/null 2>&1 && return 0
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$ES_USER" || die "could not create system user $ES_USER"
  log "created system user $ES_USER"
}

# The pid of this instance's Elasticsearch, or nothing. The pid file can be stale (a
# reboot, a SIGKILL) and pids get reused, so a pid only counts when that process's
# command line carries this instance's own tmp dir; when the pid file is missing, the
# same unique string finds the process.
instance_pid() {
  local marker="-Djava.io.tmpdir=$INST/tmp" pid=""
  if [[ -f "$PID_FILE" ]]; then
    pid="$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)"
    if [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] &&
      tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$marker"; then
      echo "$pid"
      return 0
    fi
  fi
  pid="$(pgrep -f -- "$marker( |$)" | head -n 1 || true)"
  [[ -n "$pid" ]] && echo "$pid"
  return 0
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# curl against this instance: with the CA and the elastic user when it is secured.
es_curl() {
  if [[ "$URL" == https://* ]]; then
    curl --cacert "$INST/config/tls/ca.crt" -u "$ADMIN_USER:$ES_PASSWORD" "$@"
  else
    curl "$@"
  fi
}

# Serialize concurrent runs: one lock for the shared download/unpack, one per instance.
# (A failing command exits the script under `set -e`, which releases the lock too.)
with_lock() {
  local lock="$1" lock_fd
  shift
  mkdir -p "$(dirname "$lock")"
  exec {lock_fd}>"$lock"
  flock -w 600 "$lock_fd" || die "timed out waiting for lock $lock"
  "$@"
  flock -u "$lock_fd"
  exec {lock_fd}>&-
}

# Elasticsearch names its log after the cluster: elasticsearch.log, or
# klg-cluster-<port>.log for a node of a cluster.
es_log_file() {
  local name
  name="$(sed -n 's/^cluster\.name: *//p' "$INST/config/$DIST.yml" 2>/dev/null | tail -n 1)"
  echo "$INST/logs/${name:-$DIST}.log"
}

# $1: which file. startup.out is this start's console output (JVM errors, refused
# settings); elasticsearch.log has what happened after the node came up.
show_log_tail() {
  local f="$1"
  [[ -s "$f" ]] || return 0
  printf '\n----- last lines of %s -----\n' "$f" >&2
  # Stack traces are long; 60 lines reach the cause.
  tail -n 60 "$f" >&2
}

find_java() {
  local major want=17 j
  if [[ "$DIST" == opensearch ]]; then
    [[ "${ES_VERSION%%.*}" -ge 3 ]] && want=21
  else
    [[ "${ES_VERSION%%.*}" -ge 9 ]] && want=21
  fi
  java_major() { "$1/bin/java" -XshowSettings:properties -version 2>&1 |
    awk -F'= ' '/java.specification.version/ {print $2; exit}'; }
  if [[ -n "${ES_JAVA_HOME:-}" ]]; then
    [[ -x "$ES_JAVA_HOME/bin/java" ]] || die "ES_JAVA_HOME=$ES_JAVA_HOME has no bin/java"
    echo "$ES_JAVA_HOME"
    return
  fi
  # Prefer exactly the Java the pinned version is tested with (Debian's 17 for 8.x),
  # then anything new enough.
  local candidates=(/usr/lib/jvm/java-"$want"-openjdk-*)
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME")
  candidates+=(/usr/lib/jvm/*)
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for j in "${candidates[@]}"; do
    [[ -x "$j/bin/java" ]] || continue
    major="$(java_major "$j" || true)"
    [[ "$major" =~ ^[0-9]+$ ]] && ((major >= want)) && { echo "$j"; return; }
  done
  die "no Java $want+ found ($DIST $ES_VERSION needs it); run scripts/setup.sh or set ES_JAVA_HOME"
}

# ------------------------------------------------------------------ fetch and unpack

# fetch_zip, unpack, ensure_distribution
# shellcheck source=lib/es-dist.sh
source "$SCRIPT_DIR/lib/es-dist.sh"

# ---------------------------------------------------------------------- the instance

write_config() {
  rm -rf "$INST/config"
  cp -R "$ES_HOME/config" "$INST/config"
  if requested_secure; then copy_tls_files; fi
  if [[ "$DIST" == opensearch ]]; then
    # OpenSearch starts in its home (read-only here), and its jvm.options names the GC
    # log, error files and heap dumps relative to it: point them at the instance.
    sed -i -e "s|file=logs/|file=$INST/logs/|; s|-Xloggc:logs/|-Xloggc:$INST/logs/|" \
      -e "s|ErrorFile=logs/|ErrorFile=$INST/logs/|; s|HeapDumpPath=data|HeapDumpPath=$INST/data|" \
      "$INST/config/jvm.options"
  fi
  # Appended after the distribution's (fully commented) elasticsearch.yml / opensearch.yml.
  cat >>"$INST/config/$DIST.yml" <<EOF

# ---- written by scripts/elasticsearch.sh; regenerated on every start ----
node.name: klg-$ES_PORT
path.data: $INST/data
path.logs: $INST/logs
$(discovery_settings)
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $TRANSPORT_PORT
$(security_settings)
# A full-ish disk on a developer machine must not turn indices read-only mid-test.
cluster.routing.allocation.disk.threshold_enabled: false
# Tests clean up with wildcard deletes (DELETE /audit-*).
action.destructive_requires_name: false
EOF
}

# How the node finds its cluster: alone (single-node discovery), or the cluster's
# nodes on their transport ports. Bound to loopback only, both are development mode,
# so the production bootstrap checks (vm.max_map_count, file descriptors) are only
# warnings.
discovery_settings() {
  if [[ -z "$CLUSTER_FIRST_PORT" ]]; then
    printf '%s\n' "# One node, bound to loopback only." "discovery.type: single-node"
    return
  fi
  local i hosts=() names=()
  for ((i = 0; i < ES_CLUSTER_NODES; i++)); do
    hosts+=("\"127.0.0.1:$((CLUSTER_FIRST_PORT + i + 100))\"")
    names+=("klg-$((CLUSTER_FIRST_PORT + i))")
  done
  printf '%s\n' "# Node of a $ES_CLUSTER_NODES-node cluster on loopback (scripts/elasticsearch.sh cluster-start)." \
    "cluster.name: klg-cluster-$CLUSTER_FIRST_PORT" \
    "discovery.seed_hosts: [$(IFS=,; echo "${hosts[*]}")]"
  # Only to bootstrap a new cluster: once it has formed, the setting must go (a
  # wiped node could otherwise bootstrap a second cluster of its own).
  if [[ ! -f "$(cluster_formed_marker)" ]]; then
    printf '%s\n' "cluster.initial_master_nodes: [$(IFS=,; echo "${names[*]}")]"
  fi
}

# Written once the cluster has formed with every node; removed by cluster-wipe.
cluster_formed_marker() { echo "$CACHE_DIR/instances/$CLUSTER_FIRST_PORT.cluster-formed"; }

# security_settings, find_klg_bin, copy_tls_files, es_tool, write_secrets
# shellcheck source=lib/es-secure.sh
source "$SCRIPT_DIR/lib/es-secure.sh"

do_start() {
  local pid
  pid="$(instance_pid)"
  if [[ -n "$pid" ]]; then
    if instance_secure && ! requested_secure; then
      die "already running on port $ES_PORT in secured mode (ES_SECURE=1); stop it first to switch"
    elif requested_secure && ! instance_secure; then
      die "already running on port $ES_PORT without security; stop it first to start it with ES_SECURE=1"
    fi
    log "already running on $URL (pid $pid)"
    wait_healthy "$pid" || { show_log_tail "$(es_log_file)"; die "running (pid $pid) but not healthy on $URL"; }
    return 0
  fi
  port_in_use "$ES_PORT" && die "port $ES_PORT is in use by another process (not this script's instance)"
  port_in_use "$TRANSPORT_PORT" &&
    die "transport port $TRANSPORT_PORT (ES_PORT+100) is in use by another process"

  ensure_user
  mkdir -p "$CACHE_DIR"
  if [[ $EUID -eq 0 ]] && ! as_es_user test -x "$CACHE_DIR"; then
    die "user $ES_USER cannot enter $CACHE_DIR (a parent directory is not world-searchable?); set KLG_CACHE_DIR elsewhere"
  fi
  with_lock "$CACHE_DIR/.fetch.lock" ensure_distribution
  local java_home
  java_home="$(find_java)"
  # Secured Elasticsearch: a home with the analysis names the `.security` index needs
  # (API keys). OpenSearch's secured home is made by ensure_distribution.
  if requested_secure && [[ "$DIST" == elasticsearch ]]; then
    ES_HOME="$("$SCRIPT_DIR/es-analysis-plugin/build.sh" "$ES_HOME" "$java_home" "$CACHE_DIR/dist")" ||
      die "could not build scripts/es-analysis-plugin against $ES_HOME"
  fi

  mkdir -p "$INST"/{data,logs,tmp}
  write_config
  rm -f "$PID_FILE" "$INST/logs/startup.out"
  if [[ $EUID -eq 0 ]]; then
    chown -R "$ES_USER:$ES_USER" "$INST"
    if ! as_es_user test -x "$ES_HOME/bin/$DIST"; then
      die "user $ES_USER cannot reach $ES_HOME (a parent directory is not world-searchable?); set KLG_CACHE_DIR elsewhere"
    fi
  fi
  if requested_secure; then write_secrets "$java_home"; fi

  log "starting $DIST $ES_VERSION on $URL$(requested_secure && echo ' (secured)') (transport $TRANSPORT_PORT, heap $ES_HEAP, java $java_home)"
  local t0=$SECONDS rc=0
  # A clean environment: nothing from the caller (proxies, JAVA_TOOL_OPTIONS, ...) leaks
  # into the JVM except what is listed here. cwd = logs/, because the distribution's
  # jvm.options writes gc.log and hs_err files relative to the working directory.
  # -d returns once the node has started (or failed); -p writes the pid file.
  local run_as=()
  [[ $EUID -eq 0 ]] && run_as=(runuser -u "$ES_USER" --)
  (
    # The server must not inherit the instance lock (with_lock's fd): OpenSearch 3 keeps
    # it open, and every later stop would wait for the lock of a running server.
    if [[ -n "${lock_fd:-}" ]]; then exec {lock_fd}>&-; fi
    cd "$INST/logs"
    # The same variables, named ES_* or OPENSEARCH_* by the distribution.
    exec timeout "$START_TIMEOUT" "${run_as[@]}" env -i \
      PATH=/usr/local/bin:/usr/bin:/bin \
      LANG=C.UTF-8 \
      "${ENV_PREFIX}_JAVA_HOME=$java_home" \
      "${ENV_PREFIX}_PATH_CONF=$INST/config" \
      "${ENV_PREFIX}_TMPDIR=$INST/tmp" \
      "${ENV_PREFIX}_JAVA_OPTS=-Xms$ES_HEAP -Xmx$ES_HEAP ${ES_JAVA_OPTS:-}" \
      "$ES_HOME/bin/$DIST" -d -p "$PID_FILE"
  ) >"$INST/logs/startup.out" 2>&1 || rc=$?
  if ((rc != 0)); then
    show_log_tail "$INST/logs/startup.out"
    # timeout may have killed the launcher and left the server half-started.
    pid="$(instance_pid)"
    if [[ -n "$pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    die "$DIST $ES_VERSION failed to start (exit $rc); logs in $INST/logs"
  fi
  pid="$(instance_pid)"
  [[ -n "$pid" ]] || { show_log_tail "$INST/logs/startup.out"; die "$DIST exited right after starting"; }
  local left=$((START_TIMEOUT - (SECONDS - t0)))
  ((left < 10)) && left=10
  if ! wait_healthy "$pid" "$left"; then
    show_log_tail "$(es_log_file)"
    die "$DIST on $URL not yellow after ${START_TIMEOUT} s; logs in $INST/logs"
  fi
  log "started on $URL (pid $pid) in $((SECONDS - t0)) s"
}

# Wait until the cluster is at least yellow (the default replicas=1 can never be
# assigned on one node, so green is not guaranteed). Fails early if the process dies.
wait_healthy() {
  local pid="$1" timeout="${2:-$START_TIMEOUT}" deadline body
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    body="$(es_curl -s -m 10 "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null || true)"
    [[ "$body" =~ \"status\":\"(green|yellow)\" ]] && return 0
    kill -0 "$pid" 2>/dev/null || { log "process $pid exited"; return 1; }
    sleep 1
  done
  return 1
}

do_stop() {
  local pid
  pid="$(instance_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    log "not running on port $ES_PORT"
    return 0
  fi
  log "stopping pid $pid (port $ES_PORT)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after ${STOP_TIMEOUT} s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

do_status() {
  local pid
  if instance_secure; then set_url secure; else set_url plain; fi
  pid="$(instance_pid)"
  if [[ -z "$pid" ]]; then
    echo "stopped (port $ES_PORT)"
    return 3
  fi
  echo "running on $URL (pid $pid, instance $INST)"
  # GET / is not in Elasticsearch's integ-test-zip build (405); the nodes API has the
  # same facts, on OpenSearch too.
  if ! es_curl -sf -m 10 "$URL/_nodes/_local?filter_path=cluster_name,nodes.*.name,nodes.*.version,nodes.*.build_flavor,nodes.*.build_type,nodes.*.build_hash,nodes.*.distribution"; then
    echo "(process is alive but HTTP is not answering yet)"
  fi
  echo
  return 0
}

do_wipe() {
  do_stop
  rm -rf "$INST/data"
  log "deleted $INST/data"
}

do_logs() {
  local f
  f="$(es_log_file)"
  [[ -f "$f" ]] || die "no log yet at $f"
  tail -n "${ES_LOG_LINES:-100}" "$f"
}

# ------------------------------------------------------------------------ cluster mode

# select_node, node_arg, cluster_health, wait_cluster, cluster_*, kill_node, start_node
# shellcheck source=lib/es-cluster.sh
source "$SCRIPT_DIR/lib/es-cluster.sh"

if ((CLUSTER_CMD)); then
  CLUSTER_FIRST_PORT="$ES_PORT"
  case "$1" in
    cluster-start) cluster_start ;;
    cluster-stop) cluster_stop ;;
    cluster-status) cluster_status ;;
    cluster-wipe) cluster_wipe ;;
    kill-node) kill_node "${2:-}" ;;
    start-node) start_node "${2:-}" ;;
    *) die "unknown command $1" ;;
  esac
  exit
fi

case "${1:-}" in
  start) with_lock "$INST.lock" do_start ;;
  stop) with_lock "$INST.lock" do_stop ;;
  status) do_status ;;
  wipe) with_lock "$INST.lock" do_wipe ;;
  logs) do_logs ;;
  *)
    echo "usage: [ES_SERVER=es8|es9|os2|os3] [ES_PORT=$DEFAULT_PORT] [ES_VERSION=$ES_VERSION] $0 start|stop|status|wipe|logs" >&2
    echo "       [ES_PORT=9201] [ES_CLUSTER_NODES=3] $0 cluster-start|cluster-stop|cluster-status|cluster-wipe|kill-node N|start-node N" >&2
    exit 2
    ;;
esac
