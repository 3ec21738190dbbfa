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
# A cluster of several nodes on loopback (plain HTTP only, see "Cluster mode" below):
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
#   ES_SERVER     which server: es8 (default), es9, os2 or os3 (see "Servers" below)
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
# Secured mode (opt-in; the default above is plain HTTP without authentication):
#   ES_SECURE=1   security on: HTTPS only (PEM certificate), basic auth for the built-in
#                 `elastic` superuser and file-realm users, the token service (bearer
#                 tokens) and API keys enabled (but see below). Transport TLS stays off:
#                 one node, loopback only.
#   ES_TLS_DIR    directory with ca.crt, server.crt, server.key (as written by
#                 `kube-log-gateway certs --out DIR`: SANs localhost and 127.0.0.1). They
#                 are copied into the instance's config/tls/, so klg-es can read them.
#                 Unset: generated once into instances/<port>/tls-generated/ with the
#                 kube-log-gateway binary (KLG_BIN, PATH or target/{release,debug}).
#   ES_PASSWORD   the `elastic` user's bootstrap password (default klg-elastic-pw), put in
#                 the instance's own keystore. It stays valid until someone changes it
#                 through the API; `wipe` forgets it.
#   ES_ROLES_FILE a roles.yml (file-realm roles) to use instead of the distribution's.
#   ES_USERS_FILE file-realm users to create, one `name:password:role[,role]` a line.
#   The `.security` index, where API keys live, needs the `uax_url_email` tokenizer and
#   the `pattern_capture` and `unique` filters of analysis-common, a module the
#   integ-test-zip lacks ("Unknown filter type [pattern_capture] for [email]"). So
#   secured mode runs a hard-linked copy of the distribution with a small plugin that
#   provides them (scripts/es-analysis-plugin, built with javac once per source hash):
#   API keys can be created, used and invalidated (tests/es_security.rs). Users and
#   roles here come from the file realm (ES_USERS_FILE, ES_ROLES_FILE) and `elastic`
#   from the keystore. Bearer tokens live in `.security-tokens-7` and need a licence
#   above basic: secured mode runs the self-generated 30-day trial licence (counted
#   from the first start; `wipe`).
#   Clients: https://127.0.0.1:$ES_PORT, CA = instances/<port>/config/tls/ca.crt.
#   OpenSearch (ES_SERVER=os2): the same HTTPS and certificates, plus the security plugin
#   on its own pinned server version, with transport TLS, the superuser `admin`
#   (ES_PASSWORD) and ES_USERS_FILE / ES_ROLES_FILE as internal users and roles; see
#   scripts/lib/opensearch-security.sh.
#   `status` and an "already running" `start` read the mode from the instance's config.
#   Switching one port between modes: `wipe` first is not required, but `stop` is.
#
# Cluster mode (the cluster-* commands, kill-node, start-node):
#   ES_PORT           HTTP port of node 1 (default 9201 for these commands, so the cluster
#                     never takes the single node's 9200); node N listens on ES_PORT+N-1,
#                     its transport on ES_PORT+N-1+100. Default: 9201-9203, transport
#                     9301-9303.
#   ES_CLUSTER_NODES  how many nodes (default 3)
#   Each node is an ordinary instance of the layout below (instances/<its port>/, own
#   data, logs and pid file; ES_HEAP each, 3 x 512m by default). The nodes form ONE
#   cluster: `cluster.name: klg-cluster-<ES_PORT>`, `discovery.seed_hosts` = the nodes'
#   transport ports, `node.name: klg-<port>`, and, until the cluster has formed once
#   (instances/<ES_PORT>.cluster-formed; cluster-wipe deletes it),
#   `cluster.initial_master_nodes` = every node's name.
#   All nodes are master-eligible data nodes: any one can die and the other two still
#   elect a master (a majority of three). No `discovery.type: single-node`. Security
#   is off (ES_SECURE is refused here): plain HTTP and plain transport between the
#   nodes, on loopback only. The nodes start side by side: a lone first node would wait
#   (discovery.initial_state_timeout) for a master that needs two votes.
#   `start`, `stop`, `status`, `wipe`, `logs` with ES_PORT=<a node's port> also work on
#   one node of a cluster, but `start` that way starts it as a single-node cluster:
#   use `start-node N` instead.
#
# What runs: the "integ-test-zip" distribution that Elasticsearch publishes to Maven
# Central (org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip).
# It is the server with only a few modules (x-pack-core, x-pack-security,
# transport-netty4, apm): no ingest-common, mapper-extras, painless or analysis-common,
# so tests must keep to core features. Data streams work (writes, `_rollover`,
# `_resolve/index`; 8.19.21 and 9.5.4), only the `GET _data_stream` API is missing.
# Two quirks of this build:
#   - `GET /` (the "info" endpoint) answers 405: the rest-root module is not in it.
#     `status` therefore reads the version from `GET /_nodes/_local`.
#   - x-pack-security IS in it, so security would be ON by default (with auto-generated
#     TLS certificates and a password nobody knows): we set xpack.security.enabled=false.
#   Settings of modules that are not there (e.g. ingest.geoip.downloader.enabled) make
#   it refuse to start ("unknown setting").
#
# Servers (ES_SERVER), each pinned once, in PINS below, and each on its own default port:
#   es8  Elasticsearch 8.19 (the main version: the whole test suite runs on it)
#   es9  Elasticsearch 9.x, the newest integ-test-zip Maven Central serves (9.5.5 and
#        9.6.0 are not served; 9.5.4 is)
#   os2  OpenSearch 2.19 (org.opensearch.distribution.integ-test-zip:opensearch:<v>:zip)
#   os3  OpenSearch 3.x (needs Java 21+; the newest served: 3.8.0)
# OpenSearch's integ-test-zip is the bare server with transport-netty4 only: no security
# plugin (ES_SECURE=1 installs it, on os2's SECURE_PIN), no index-management plugin (so no
# ISM), no `GET /` quirk.
# The cluster commands run es8 only. Every instance is plain HTTP unless ES_SECURE=1.
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

# $1: the artifact (default: the server's), $2: where its zip goes (default: $ZIP).
fetch_zip() {
  local artifact="${1:-$GROUP:$DIST:$ES_VERSION:zip}" ZIP="${2:-$ZIP}" name
  [[ -f "$ZIP" ]] && unzip -tq "$ZIP" >/dev/null 2>&1 && return 0
  [[ -f "$ZIP" ]] && { log "cached zip is incomplete or corrupt, fetching again"; rm -f "$ZIP"; }
  command -v mvn >/dev/null 2>&1 || bash "$SCRIPT_DIR/setup.sh"
  command -v mvn >/dev/null 2>&1 || die "mvn not found after scripts/setup.sh"

  IFS=: read -r _ name _ <<<"$artifact"
  name="$name-$(cut -d: -f3 <<<"$artifact").zip"
  local tmp="$CACHE_DIR/downloads/.tmp.$$" mvn_log="$CACHE_DIR/downloads/mvn.log" t0=$SECONDS
  log "fetching $artifact from Maven Central (once; about 50-110 MB)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Own local repository inside the cache: the whole cache can be deleted in one go,
  # and a corrupt download there cannot be "copied" again from ~/.m2.
  # Batch mode: no colours and no prompts (CI has no stdin). Plugin version pinned
  # because Maven 3.8's default maven-dependency-plugin is old.
  if ! mvn -B -q -Dmaven.repo.local="$CACHE_DIR/m2" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    -Dartifact="$artifact" -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    rm -rf "$tmp"
    die "mvn could not fetch $artifact (log: $mvn_log). Is ES_VERSION=$ES_VERSION published?"
  fi
  # The zip is now both in $tmp and in the Maven repository: keep one copy.
  rm -rf "$CACHE_DIR/m2/org/$DIST"
  unzip -tq "$tmp/$name" >/dev/null 2>&1 ||
    { rm -rf "$tmp"; die "downloaded zip is corrupt; run the command again"; }
  mv "$tmp/$name" "$ZIP"
  rm -rf "$tmp" "$mvn_log"
  log "fetched in $((SECONDS - t0)) s"
}

unpack() {
  [[ -x "$ES_HOME/bin/$DIST" ]] && return 0
  local tmp="$CACHE_DIR/dist/.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  unzip -q "$ZIP" -d "$tmp" || { rm -rf "$tmp"; die "could not unpack $ZIP"; }
  [[ -x "$tmp/$DIST-$ES_VERSION/bin/$DIST" ]] ||
    { rm -rf "$tmp"; die "$ZIP has no $DIST-$ES_VERSION/bin/$DIST"; }
  # Readable by the unprivileged runtime user whatever our umask is.
  chmod -R a+rX "$tmp"
  rm -rf "$ES_HOME"
  # Rename last, so a half-unpacked tree is never taken for a complete one.
  mv "$tmp/$DIST-$ES_VERSION" "$ES_HOME"
  rm -rf "$tmp"
}

ensure_distribution() {
  mkdir -p "$CACHE_DIR/downloads" "$CACHE_DIR/dist" "$CACHE_DIR/instances"
  if [[ $EUID -eq 0 ]]; then
    # The runtime user must reach dist/ and instances/ (not downloads/ or m2/).
    chmod a+rx "$CACHE_DIR" "$CACHE_DIR/dist" "$CACHE_DIR/instances"
  fi
  # Leftovers of an interrupted fetch/unpack; safe to remove, we hold the fetch lock.
  rm -rf "$CACHE_DIR"/downloads/.tmp.* "$CACHE_DIR"/dist/.tmp.*
  fetch_zip
  unpack
  if requested_secure && [[ "$DIST" == opensearch ]]; then os_security_distribution; fi
}

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

# The security part of elasticsearch.yml. Default: exactly the plain settings.
security_settings() {
  if [[ "$DIST" == opensearch ]]; then
    if requested_secure; then os_security_settings; return; fi
    printf '%s\n' "# OpenSearch's integ-test-zip has no security plugin: plain HTTP."
    return
  fi
  if ! requested_secure; then
    printf '%s\n' "# Plain HTTP without authentication (otherwise TLS + a generated password)." \
      "xpack.security.enabled: false"
    return
  fi
  # Explicit xpack.security.* settings also keep the distribution's start-up
  # "security auto-configuration" (generated certs + enrollment) from running.
  cat <<EOF
$SECURE_MARKER
xpack.security.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.certificate: tls/server.crt
xpack.security.http.ssl.key: tls/server.key
xpack.security.http.ssl.certificate_authorities: [tls/ca.crt]
# Single node, development mode on loopback: no transport TLS needed.
xpack.security.transport.ssl.enabled: false
xpack.security.authc.api_key.enabled: true
xpack.security.authc.token.enabled: true
# The token service (bearer tokens) is not in the basic licence.
xpack.license.self_generated.type: trial
EOF
}

# Finds the kube-log-gateway binary, to generate certificates when ES_TLS_DIR is unset.
find_klg_bin() {
  local c
  for c in "${KLG_BIN:-}" "$(command -v kube-log-gateway 2>/dev/null || true)" \
    "$SCRIPT_DIR/../target/release/kube-log-gateway" "$SCRIPT_DIR/../target/debug/kube-log-gateway"; do
    [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
  done
  return 1
}

copy_tls_files() {
  local src="${ES_TLS_DIR:-}" f bin
  if [[ -z "$src" ]]; then
    src="$INST/tls-generated"
    if [[ ! -f "$src/server.key" ]]; then
      bin="$(find_klg_bin)" || die "ES_SECURE=1 needs ES_TLS_DIR (ca.crt server.crt server.key), or a built kube-log-gateway to generate them (cargo build, or KLG_BIN=...)"
      "$bin" certs --out "$src" >/dev/null || die "could not generate certificates into $src"
      log "generated a CA and server certificate into $src"
    fi
  fi
  for f in ca.crt server.crt server.key; do
    [[ -r "$src/$f" ]] || die "ES_TLS_DIR=$src has no readable $f"
  done
  mkdir -p "$INST/config/tls"
  cp "$src/ca.crt" "$src/server.crt" "$src/server.key" "$INST/config/tls/"
  chmod 0644 "$INST/config/tls/ca.crt" "$INST/config/tls/server.crt"
  chmod 0600 "$INST/config/tls/server.key" # chowned to the runtime user with the rest
  if [[ -n "${ES_ROLES_FILE:-}" ]]; then
    cp "$ES_ROLES_FILE" "$INST/config/roles.yml" || die "cannot copy ES_ROLES_FILE=$ES_ROLES_FILE"
  fi
}

# Runs one of the distribution's CLI tools for this instance, as the runtime user, in
# the same clean environment as the server. $1: the java home; then the tool and args.
es_tool() {
  local java_home="$1" run_as=()
  shift
  [[ $EUID -eq 0 ]] && run_as=(runuser -u "$ES_USER" --)
  "${run_as[@]}" env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    ES_JAVA_HOME="$java_home" ES_PATH_CONF="$INST/config" ES_TMPDIR="$INST/tmp" \
    "$ES_HOME/bin/$1" "${@:2}"
}

# Secured mode, before the start: the elastic user's bootstrap password in this
# instance's own keystore (config/ is regenerated on every start, so the keystore and
# the file-realm users are too), then the ES_USERS_FILE users.
write_secrets() {
  local java_home="$1" line name password roles
  if [[ "$DIST" == opensearch ]]; then os_security_files "$java_home"; return; fi
  printf '%s\n' "$ES_PASSWORD" |
    es_tool "$java_home" elasticsearch-keystore add --force --stdin bootstrap.password \
      >"$INST/logs/keystore.out" 2>&1 ||
    { show_log_tail "$INST/logs/keystore.out"; die "could not write bootstrap.password into $INST/config/elasticsearch.keystore"; }
  [[ -n "${ES_USERS_FILE:-}" ]] || return 0
  [[ -r "$ES_USERS_FILE" ]] || die "cannot read ES_USERS_FILE=$ES_USERS_FILE"
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    IFS=: read -r name password roles <<<"$line"
    [[ -n "$name" && -n "$password" ]] || die "ES_USERS_FILE: expected name:password:roles, got '$line'"
    es_tool "$java_home" elasticsearch-users useradd "$name" -p "$password" -r "$roles" \
      >"$INST/logs/users.out" 2>&1 ||
      { show_log_tail "$INST/logs/users.out"; die "could not add file-realm user $name"; }
  done <"$ES_USERS_FILE"
}

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
  # Secured mode: a home with the analysis names the `.security` index needs (API keys).
  if requested_secure; then
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

# Points the instance globals (ES_PORT, INST, URL, ...) at node $1 (1-based).
select_node() {
  ES_PORT=$((CLUSTER_FIRST_PORT + $1 - 1))
  TRANSPORT_PORT=$((ES_PORT + 100))
  INST="$CACHE_DIR/instances/$ES_PORT"
  PID_FILE="$INST/es.pid"
  set_url plain
}

node_arg() {
  [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] && (($1 <= ES_CLUSTER_NODES)) ||
    die "expected a node number between 1 and $ES_CLUSTER_NODES (got '${1:-}')"
}

# The health of the cluster, asked of the first node that answers; $1: query string.
cluster_health() {
  local i body
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    body="$(curl -s -m 70 "http://127.0.0.1:$((CLUSTER_FIRST_PORT + i - 1))/_cluster/health?$1" 2>/dev/null || true)"
    [[ "$body" == *'"status"'* ]] && { echo "$body"; return 0; }
  done
  return 1
}

# Waits until the cluster has $1 nodes and is at least yellow, for up to $2 seconds.
wait_cluster() {
  local nodes="$1" deadline=$((SECONDS + $2)) body
  while ((SECONDS < deadline)); do
    body="$(cluster_health "wait_for_nodes=$nodes&wait_for_status=yellow&timeout=5s" || true)"
    [[ "$body" =~ \"status\":\"(green|yellow)\" && "$body" =~ \"number_of_nodes\":$nodes, ]] && return 0
    sleep 1
  done
  log "cluster health after $2 s: ${body:-no node answers}"
  return 1
}

cluster_start() {
  requested_secure && die "cluster mode is plain HTTP only (ES_SECURE is not supported here)"
  local i pids=() failed=0 t0=$SECONDS
  # In parallel: a first node alone cannot elect a master (it needs a majority).
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    (select_node "$i" && with_lock "$INST.lock" do_start) &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  ((failed == 0)) || die "a node did not start (logs: ES_PORT=<its port> $0 logs)"
  wait_cluster "$ES_CLUSTER_NODES" "$START_TIMEOUT" ||
    die "the cluster did not reach $ES_CLUSTER_NODES nodes, yellow or green"
  touch "$(cluster_formed_marker)"
  log "cluster klg-cluster-$CLUSTER_FIRST_PORT: $ES_CLUSTER_NODES nodes on http://127.0.0.1:$CLUSTER_FIRST_PORT..$((CLUSTER_FIRST_PORT + ES_CLUSTER_NODES - 1)) in $((SECONDS - t0)) s"
}

cluster_stop() {
  local i pids=()
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    (select_node "$i" && with_lock "$INST.lock" do_stop) &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
}

cluster_status() {
  local i rc=0 health
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    select_node "$i"
    printf 'node %d: ' "$i"
    do_status >/dev/null && echo "running on $URL (pid $(instance_pid))" || { echo "stopped (port $ES_PORT)"; rc=3; }
  done
  health="$(cluster_health "filter_path=cluster_name,status,number_of_nodes,active_shards,unassigned_shards" || true)"
  echo "health: ${health:-no node answers}"
  return "$rc"
}

cluster_wipe() {
  local i
  cluster_stop
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    select_node "$i"
    rm -rf "$INST/data"
    log "deleted $INST/data"
  done
  rm -f "$(cluster_formed_marker)"
}

kill_node() {
  node_arg "$1"
  select_node "$1"
  local pid
  pid="$(instance_pid)"
  [[ -n "$pid" ]] || { log "node $1 (port $ES_PORT) is not running"; return 0; }
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  log "killed node $1 (port $ES_PORT, pid $pid) with SIGKILL"
}

start_node() {
  node_arg "$1"
  select_node "$1"
  with_lock "$INST.lock" do_start
  local nodes
  nodes="$(cluster_health "filter_path=status,number_of_nodes" || true)"
  nodes="${nodes##*\"number_of_nodes\":}"
  nodes="${nodes%%[!0-9]*}"
  log "node $1 is up; the cluster has ${nodes:-?} nodes"
}

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
