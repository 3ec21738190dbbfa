#!/usr/bin/env bash
# A real, local kube-apiserver (with its own etcd) for development and tests.
#
#   scripts/kube-apiserver.sh build|start|stop|status|logs|env
#
#   build   install etcd (Debian's etcd-server) and build kube-apiserver, kubectl and kubelet once
#           (cached; rebuilt only when the pin changes). The first build takes about
#           an hour on two cores shared with other work (65 minutes at load 15-21: 46 for
#           kube-apiserver and kubectl, 19 for kubelet); later runs take a second.
#   start   build (if needed), then start etcd and kube-apiserver on 127.0.0.1 and wait
#           until /readyz answers; prints the URL, the tokens and the kubeconfig paths.
#           "already running" is fine.
#   stop    SIGTERM both, SIGKILL after 20 s; stopped is fine
#   status  running/stopped and the server version; exit 0 running, 3 stopped
#   logs    the tail of kube-apiserver's and etcd's logs (KUBE_LOG_LINES, default 100)
#   env     print the instance's env file (KUBE_URL=..., see below) when it is running
#   built   print the binaries' directory; exit 0 if both are built for the current pin,
#           3 if not (tests use it to tell "not built" from "broken")
#
# Environment:
#   KUBE_VERSION      the pin (default below). It must match scripts/kube-apiserver/go.mod,
#                     the wrapper module the binaries are built from.
#   KUBE_DIR          the instance's own directory (default $CACHE_DIR/k8s/instances/default):
#                     certificates, tokens, etcd data, logs, audit log, pid files. Tests use
#                     a temporary directory each, so several instances can run at once.
#   KUBE_PORT         kube-apiserver's HTTPS port on 127.0.0.1 (default: a free one)
#   ETCD_PORT         etcd's client port (default: a free one)
#   ETCD_PEER_PORT    etcd's peer port (default: a free one)
#   KUBE_BUILD_JOBS   `go build -p` (default: 1, or the number of cores when CI=true); the
#                     build runs under `nice -n 19` either way
#   KLG_CACHE_DIR     as for scripts/elasticsearch.sh: /var/cache/kube-log-gateway as root,
#                     else ~/.cache/kube-log-gateway
#   Audit webhook (optional; all four, or none):
#   KLG_WEBHOOK_URL   e.g. https://127.0.0.1:8443/audit (the gateway)
#   KLG_WEBHOOK_CA    the CA that signed the gateway's server certificate
#   KLG_WEBHOOK_CERT  kube-apiserver's client certificate for the gateway
#   KLG_WEBHOOK_KEY   its key
#   The webhook kubeconfig is deploy/kube-apiserver/audit-webhook-kubeconfig.yaml with
#   its server URL and file paths replaced by these, so the documented file is what runs.
#   KLG_AUDIT_POLICY  the audit policy (default deploy/kube-apiserver/audit-policy.yaml)
#   KUBE_APISERVER_EXTRA_ARGS  more kube-apiserver flags, space-separated, appended last
#                     (e.g. "--watch-cache=false --etcd-compaction-interval=1s", which a
#                     test uses to make watch history expire: a 410 Gone on demand)
#
# What runs (all on 127.0.0.1, nothing on the network):
#   etcd 3.4 (Debian's etcd-server), data in $KUBE_DIR/etcd
#   kube-apiserver with its own CA and serving certificate, service-account keys and
#   issuer, a token file with two users, --authorization-mode=RBAC,
#   --service-cluster-ip-range=10.96.0.0/16 (the deploy/ manifests' fixed clusterIP is in it),
#   --audit-policy-file, --audit-log-path=$KUBE_DIR/audit.log --audit-log-format=json
#   (every audit event, the ground truth for tests), and with KLG_WEBHOOK_* the audit
#   webhook (--audit-webhook-batch-max-wait=1s, so events arrive within seconds).
#
# Users (--token-auth-file):
#   klg-admin   group system:masters (cluster-admin)        token in $KUBE_DIR/env
#   klg-nobody  group klg:nobody, no RBAC grants (403s)      token in $KUBE_DIR/env
#
# $KUBE_DIR/env (shell syntax) has KUBE_URL KUBE_CA KUBE_ADMIN_TOKEN KUBE_USER_TOKEN
# KUBECONFIG (admin) KUBECONFIG_NOBODY AUDIT_LOG KUBECTL KUBE_APISERVER_PID ETCD_PID.
#
# Cache layout (binaries; the instance lives in KUBE_DIR):
#   $CACHE_DIR/k8s/<version>/{kube-apiserver,kubectl,build.stamp,build.log}
# build.stamp holds a hash of the wrapper go.mod/go.sum and the link flags; a binary
# is rebuilt only when that changes. Go's own caches (GOMODCACHE, GOCACHE) make a
# rebuild after a cache wipe faster, but are not needed.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
START_TIMEOUT=120 # seconds until /readyz must answer
STOP_TIMEOUT=20   # seconds between SIGTERM and SIGKILL

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
WRAPPER_DIR="$SCRIPT_DIR/kube-apiserver"

if [[ $EUID -eq 0 ]]; then
  CACHE_DIR="${KLG_CACHE_DIR:-/var/cache/kube-log-gateway}"
else
  CACHE_DIR="${KLG_CACHE_DIR:-$HOME/.cache/kube-log-gateway}"
fi
BIN_DIR="$CACHE_DIR/k8s/$KUBE_VERSION"
KUBE_APISERVER="$BIN_DIR/kube-apiserver"
KUBECTL="$BIN_DIR/kubectl"
KUBELET="$BIN_DIR/kubelet"
KUBE_DIR="${KUBE_DIR:-$CACHE_DIR/k8s/instances/default}"
ENV_FILE="$KUBE_DIR/env"

log() { printf 'kube-apiserver: %s\n' "$*" >&2; }
die() { printf 'kube-apiserver: ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$KUBE_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "KUBE_VERSION must look like v1.36.3 (got '$KUBE_VERSION')"
KUBE_MINOR="${BASH_REMATCH[1]}"
STAGING_VERSION="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

# ---------------------------------------------------------------------------- helpers

# The instance lock's fd, closed in the daemons we start: an inherited fd would keep
# the lock held for as long as they run.
INSTANCE_LOCK_FD=
with_lock() {
  local lock="$1" lock_fd
  shift
  mkdir -p "$(dirname "$lock")"
  exec {lock_fd}>"$lock"
  flock -w 3600 "$lock_fd" || die "timed out waiting for lock $lock"
  [[ "$lock" == "$KUBE_DIR.lock" ]] && INSTANCE_LOCK_FD=$lock_fd
  "$@"
  flock -u "$lock_fd"
  exec {lock_fd}>&-
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port on 127.0.0.1 that nothing listens on, from the range Linux does not hand out
# as ephemeral ports by default (so a client socket does not take it meanwhile).
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port found on 127.0.0.1"
}

show_log_tail() {
  local f="$1"
  [[ -s "$f" ]] || return 0
  printf '\n----- last lines of %s -----\n' "$f" >&2
  tail -n "${2:-40}" "$f" >&2
}

# The pid in $1 (a pid file), if that process still runs with $2 on its command line
# (pids get reused; the instance directory is part of every command line we start).
live_pid() {
  local file="$1" marker="$2" pid
  [[ -f "$file" ]] || return 0
  pid="$(tr -dc '0-9' <"$file" 2>/dev/null || true)"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 0
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" && echo "$pid"
  return 0
}
apiserver_pid() { live_pid "$KUBE_DIR/kube-apiserver.pid" "$KUBE_DIR/"; }
etcd_pid() { live_pid "$KUBE_DIR/etcd.pid" "$KUBE_DIR/"; }

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $EUID -eq 0 ]] || die "missing packages ${missing[*]}: run as root, or apt-get install them"
  log "installing ${missing[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # Debian's etcd-server registers a system service; without systemd (containers, CI)
  # its postinst only prints that it cannot start it, which is what we want: this
  # script runs its own etcd.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_packages() {
  apt_install etcd-server openssl curl ca-certificates util-linux
  command -v etcd >/dev/null || die "etcd not found after installing etcd-server"
}

# ------------------------------------------------------------------------------ build

# find_go, ldflags, build_stamp, check_wrapper, go_build_kube
# shellcheck source=lib/kube-build.sh
source "$SCRIPT_DIR/lib/kube-build.sh"

do_build() {
  ensure_packages
  check_wrapper
  local stamp
  stamp="$(build_stamp)"
  if [[ -x "$KUBE_APISERVER" && -x "$KUBECTL" && -x "$KUBELET" && "$(cat "$BIN_DIR/build.stamp" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  local t0=$SECONDS cmd blog="$BIN_DIR/build.log"
  mkdir -p "$BIN_DIR"
  rm -f "$BIN_DIR/build.stamp" "$BIN_DIR"/.tmp.*
  log "building kube-apiserver, kubectl and kubelet $KUBE_VERSION from the Go module k8s.io/kubernetes"
  log "(once; about an hour on two busy cores, go build under nice; log: $blog)"
  : >"$blog"
  for cmd in kube-apiserver kubectl kubelet; do
    go_build_kube "$blog" "$cmd"
    log "built $cmd after $((SECONDS - t0)) s"
  done
  "$KUBE_APISERVER" --version | grep -qxF "Kubernetes $KUBE_VERSION" ||
    die "built kube-apiserver reports '$("$KUBE_APISERVER" --version)', not $KUBE_VERSION"
  echo "$stamp" >"$BIN_DIR/build.stamp"
  log "kube-apiserver and kubectl $KUBE_VERSION built in $((SECONDS - t0)) s into $BIN_DIR"
}

# ------------------------------------------------------------------------ the instance

# A CA, kube-apiserver's serving certificate (localhost, 127.0.0.1, and the in-cluster
# names), service-account signing keys and the token file. Kept across restarts.
make_credentials() {
  local p="$KUBE_DIR/pki"
  [[ -f "$p/done" ]] && return 0
  mkdir -p "$p"
  chmod 700 "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=klg-test-kubernetes-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key \
      -out apiserver.csr 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.96.0.1" \
      "extendedKeyUsage=serverAuth" "keyUsage=digitalSignature,keyEncipherment" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    local admin nobody
    admin="$(openssl rand -hex 24)"
    nobody="$(openssl rand -hex 24)"
    # token,user,uid,"group1,group2"
    printf '%s\n' "$admin,klg-admin,klg-admin-uid,\"system:masters\"" \
      "$nobody,klg-nobody,klg-nobody-uid,\"klg:nobody\"" >tokens.csv
    echo "$admin" >admin.token
    echo "$nobody" >nobody.token
    chmod 600 ./*.key tokens.csv ./*.token
    touch done
  ) || die "could not create certificates and tokens in $p"
}

write_kubeconfig() {
  local file="$1" user="$2" token="$3"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: klg-test
    cluster:
      server: $KUBE_URL
      certificate-authority: $KUBE_DIR/pki/ca.crt
users:
  - name: $user
    user:
      token: $token
contexts:
  - name: $user
    context:
      cluster: klg-test
      user: $user
current-context: $user
EOF
  chmod 600 "$file"
}

# deploy/kube-apiserver/audit-webhook-kubeconfig.yaml with the test's URL and files.
write_webhook_kubeconfig() {
  local src="$REPO_DIR/deploy/kube-apiserver/audit-webhook-kubeconfig.yaml" out="$KUBE_DIR/audit-webhook-kubeconfig.yaml" f
  for f in KLG_WEBHOOK_CA KLG_WEBHOOK_CERT KLG_WEBHOOK_KEY; do
    [[ -n "${!f:-}" && -r "${!f}" ]] || die "KLG_WEBHOOK_URL is set, so $f must name a readable file (got '${!f:-}')"
  done
  [[ "$KLG_WEBHOOK_URL" =~ ^https:// ]] || die "KLG_WEBHOOK_URL must be https:// (got '$KLG_WEBHOOK_URL')"
  sed -e "s#server: https://[^ ]*#server: $KLG_WEBHOOK_URL#" \
    -e "s#certificate-authority: /etc/kubernetes/audit/ca.crt#certificate-authority: $KLG_WEBHOOK_CA#" \
    -e "s#client-certificate: /etc/kubernetes/audit/client.crt#client-certificate: $KLG_WEBHOOK_CERT#" \
    -e "s#client-key: /etc/kubernetes/audit/client.key#client-key: $KLG_WEBHOOK_KEY#" \
    "$src" >"$out"
  grep -v '^[[:space:]]*#' "$out" | grep -q "/etc/kubernetes/audit/" && die "$src changed shape: not every path was replaced in $out"
  grep -qF "server: $KLG_WEBHOOK_URL" "$out" || die "$src changed shape: no cluster server line replaced"
  echo "$out"
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT)) token
  token="$(cat "$KUBE_DIR/pki/admin.token")"
  while ((SECONDS < deadline)); do
    if curl -sf -m 5 --cacert "$KUBE_DIR/pki/ca.crt" -H "Authorization: Bearer $token" \
      "$KUBE_URL/readyz" >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { log "kube-apiserver (pid $pid) exited"; return 1; }
    sleep 0.5
  done
  return 1
}

do_start() {
  local apid epid
  apid="$(apiserver_pid)"
  if [[ -n "$apid" && -f "$ENV_FILE" ]]; then
    # shellcheck disable=SC1090
    source "$ENV_FILE"
    log "already running on $KUBE_URL (pid $apid)"
    wait_ready "$apid" || { show_log_tail "$KUBE_DIR/kube-apiserver.log"; die "running but not ready"; }
    print_how_to_reach
    return 0
  fi
  do_stop_quiet # a half-started instance: etcd alive, kube-apiserver dead
  with_lock "$CACHE_DIR/k8s/.build.lock" do_build

  mkdir -p "$KUBE_DIR"
  chmod 700 "$KUBE_DIR"
  make_credentials
  local etcd_port="${ETCD_PORT:-$(free_port)}" peer_port port="${KUBE_PORT:-$(free_port)}"
  peer_port="${ETCD_PEER_PORT:-$(free_port)}"
  while [[ -z "${ETCD_PEER_PORT:-}" && ( "$peer_port" == "$etcd_port" || "$peer_port" == "$port" ) ]]; do
    peer_port="$(free_port)"
  done
  [[ "$port" != "$etcd_port" && "$peer_port" != "$etcd_port" && "$peer_port" != "$port" ]] ||
    die "KUBE_PORT ($port), ETCD_PORT ($etcd_port) and ETCD_PEER_PORT ($peer_port) must differ"
  for p in "$etcd_port" "$peer_port" "$port"; do
    port_in_use "$p" && die "port $p on 127.0.0.1 is in use"
  done
  KUBE_URL="https://127.0.0.1:$port"

  # The audit files first: a bad one must not leave etcd running.
  local policy="${KLG_AUDIT_POLICY:-$REPO_DIR/deploy/kube-apiserver/audit-policy.yaml}" webhook=()
  [[ -r "$policy" ]] || die "audit policy $policy not readable"
  if [[ -n "${KLG_WEBHOOK_URL:-}" ]]; then
    webhook=(--audit-webhook-config-file="$(write_webhook_kubeconfig)" --audit-webhook-batch-max-wait=1s)
  fi
  local extra_args=()
  read -r -a extra_args <<<"${KUBE_APISERVER_EXTRA_ARGS:-}"
  local a
  for a in "${extra_args[@]}"; do
    [[ "$a" == --* ]] || die "KUBE_APISERVER_EXTRA_ARGS: '$a' is not a --flag (flags are space-separated, each --name=value)"
  done
  # etcd: one member, loopback only, its own data dir (kept across restarts).
  mkdir -p "$KUBE_DIR/etcd"
  chmod 700 "$KUBE_DIR/etcd"
  log "starting etcd on 127.0.0.1:$etcd_port ($(etcd --version 2>/dev/null | head -n 1))"
  setsid etcd --name klg-test --data-dir "$KUBE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "klg-test=http://127.0.0.1:$peer_port" --logger zap --log-level warn \
    </dev/null >"$KUBE_DIR/etcd.log" 2>&1 {INSTANCE_LOCK_FD}>&- &
  epid=$!
  echo "$epid" >"$KUBE_DIR/etcd.pid"
  local deadline=$((SECONDS + 30))
  until curl -sf -m 2 "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'; do
    if ! kill -0 "$epid" 2>/dev/null || ((SECONDS > deadline)); then
      show_log_tail "$KUBE_DIR/etcd.log"
      do_stop_quiet
      die "etcd did not become healthy on 127.0.0.1:$etcd_port"
    fi
    sleep 0.2
  done

  local pki="$KUBE_DIR/pki"
  log "starting kube-apiserver $KUBE_VERSION on $KUBE_URL${KLG_WEBHOOK_URL:+ (audit webhook: $KLG_WEBHOOK_URL)}"
  mkdir -p "$KUBE_DIR/cert-dir"
  setsid "$KUBE_APISERVER" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
    --cert-dir="$KUBE_DIR/cert-dir" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.96.0.0/16 \
    --token-auth-file="$pki/tokens.csv" \
    --authorization-mode=RBAC \
    --allow-privileged=true \
    --anonymous-auth=false \
    --audit-policy-file="$policy" \
    --audit-log-path="$KUBE_DIR/audit.log" --audit-log-format=json --audit-log-maxsize=0 \
    "${webhook[@]}" \
    "${extra_args[@]}" \
    </dev/null >"$KUBE_DIR/kube-apiserver.log" 2>&1 {INSTANCE_LOCK_FD}>&- &
  apid=$!
  echo "$apid" >"$KUBE_DIR/kube-apiserver.pid"
  local t0=$SECONDS
  if ! wait_ready "$apid"; then
    show_log_tail "$KUBE_DIR/kube-apiserver.log" 60
    do_stop_quiet
    die "kube-apiserver not ready on $KUBE_URL after $START_TIMEOUT s (logs in $KUBE_DIR)"
  fi

  local admin nobody
  admin="$(cat "$pki/admin.token")"
  nobody="$(cat "$pki/nobody.token")"
  write_kubeconfig "$KUBE_DIR/admin.kubeconfig" klg-admin "$admin"
  write_kubeconfig "$KUBE_DIR/nobody.kubeconfig" klg-nobody "$nobody"
  cat >"$ENV_FILE" <<EOF
KUBE_URL=$KUBE_URL
KUBE_CA=$pki/ca.crt
KUBE_ADMIN_TOKEN=$admin
KUBE_USER_TOKEN=$nobody
KUBECONFIG=$KUBE_DIR/admin.kubeconfig
KUBECONFIG_NOBODY=$KUBE_DIR/nobody.kubeconfig
AUDIT_LOG=$KUBE_DIR/audit.log
KUBECTL=$KUBECTL
KUBE_APISERVER_PID=$apid
ETCD_PID=$epid
EOF
  chmod 600 "$ENV_FILE"
  log "ready in $((SECONDS - t0)) s"
  print_how_to_reach
}

print_how_to_reach() {
  cat <<EOF
kube-apiserver $KUBE_VERSION is running on $KUBE_URL
  admin (system:masters): KUBECONFIG=$KUBE_DIR/admin.kubeconfig $KUBECTL get ns
  admin token:            $(cat "$KUBE_DIR/pki/admin.token")   (CA: $KUBE_DIR/pki/ca.crt)
  no-RBAC user:           KUBECONFIG=$KUBE_DIR/nobody.kubeconfig
  audit log (json):       $KUBE_DIR/audit.log
  everything, sourceable: $ENV_FILE
  stop:                   KUBE_DIR=$KUBE_DIR $0 stop
EOF
}

# $1: pid, $2: name
stop_pid() {
  local pid="$1" name="$2" deadline
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) still running after $STOP_TIMEOUT s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
}

do_stop_quiet() {
  stop_pid "$(apiserver_pid)" kube-apiserver
  stop_pid "$(etcd_pid)" etcd
  rm -f "$KUBE_DIR/kube-apiserver.pid" "$KUBE_DIR/etcd.pid" "$ENV_FILE"
}

do_stop() {
  local a e
  a="$(apiserver_pid)"
  e="$(etcd_pid)"
  if [[ -z "$a$e" ]]; then
    rm -f "$KUBE_DIR/kube-apiserver.pid" "$KUBE_DIR/etcd.pid" "$ENV_FILE"
    log "not running ($KUBE_DIR)"
    return 0
  fi
  log "stopping${a:+ kube-apiserver (pid $a)}${e:+ etcd (pid $e)}"
  do_stop_quiet
  log "stopped"
}

do_status() {
  local a e
  a="$(apiserver_pid)"
  e="$(etcd_pid)"
  if [[ -z "$a" ]]; then
    echo "stopped ($KUBE_DIR)${e:+; etcd still running (pid $e): run stop}"
    if [[ -x "$KUBE_APISERVER" ]]; then echo "binaries: $BIN_DIR"; else echo "binaries: not built ($0 build)"; fi
    return 3
  fi
  # shellcheck disable=SC1090
  [[ -f "$ENV_FILE" ]] && source "$ENV_FILE"
  echo "running on ${KUBE_URL:-?} (kube-apiserver pid $a, etcd pid ${e:-none}, instance $KUBE_DIR)"
  if [[ -n "${KUBE_URL:-}" ]]; then
    curl -sf -m 5 --cacert "$KUBE_DIR/pki/ca.crt" -H "Authorization: Bearer $(cat "$KUBE_DIR/pki/admin.token")" \
      "$KUBE_URL/version" || echo "(process is alive but HTTPS is not answering)"
    echo
  fi
  return 0
}

do_logs() {
  local f found=0
  for f in "$KUBE_DIR/kube-apiserver.log" "$KUBE_DIR/etcd.log"; do
    [[ -f "$f" ]] || continue
    found=1
    printf -- '----- %s -----\n' "$f"
    tail -n "${KUBE_LOG_LINES:-100}" "$f"
  done
  ((found)) || die "no logs yet in $KUBE_DIR"
}

case "${1:-}" in
  build) with_lock "$CACHE_DIR/k8s/.build.lock" do_build && log "binaries: $KUBE_APISERVER $KUBECTL $KUBELET" ;;
  start) with_lock "$KUBE_DIR.lock" do_start ;;
  stop) with_lock "$KUBE_DIR.lock" do_stop ;;
  status) do_status ;;
  logs) do_logs ;;
  built)
    echo "$BIN_DIR"
    [[ -x "$KUBE_APISERVER" && -x "$KUBECTL" && -x "$KUBELET" && -f "$WRAPPER_DIR/go.mod" &&
      "$(cat "$BIN_DIR/build.stamp" 2>/dev/null)" == "$(build_stamp)" ]] || exit 3
    ;;
  env) [[ -f "$ENV_FILE" && -n "$(apiserver_pid)" ]] || die "not running ($KUBE_DIR)"; cat "$ENV_FILE" ;;
  *)
    echo "usage: [KUBE_DIR=dir] [KLG_WEBHOOK_URL=... KLG_WEBHOOK_CA=... KLG_WEBHOOK_CERT=... KLG_WEBHOOK_KEY=...] $0 build|start|stop|status|logs|env|built" >&2
    exit 2
    ;;
esac
