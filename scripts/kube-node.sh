#!/usr/bin/env bash
# A real one-node Kubernetes cluster for tests: containerd + kubelet registered with the
# kube-apiserver of scripts/kube-apiserver.sh, plus kube-controller-manager,
# kube-scheduler and kube-proxy, so that Deployments, Jobs, StatefulSets, DaemonSets and
# Services work as in any cluster.
#
#   scripts/kube-node.sh build|start|stop|status|env|logs
#
#   build   install containerd, runc, the CNI plugins and busybox-static (Debian); build
#           kube-controller-manager, kube-scheduler and kube-proxy from the same wrapper
#           module as kube-apiserver (cached, rebuilt when its go.mod/go.sum change); write
#           the pause and busybox images (cached)
#   start   build, start kube-apiserver (scripts/kube-apiserver.sh start, in KUBE_DIR;
#           KLG_WEBHOOK_* pass through), the controller manager, the scheduler, kube-proxy,
#           containerd and kubelet; wait until the node is Ready. Idempotent: what runs is
#           left running.
#   stop    stop the controller manager and the scheduler, delete every pod through the
#           API and let kubelet stop them (what is left: killed through containerd), stop
#           kubelet, containerd and kube-proxy, remove kube-proxy's and kubelet's iptables
#           chains and the pod bridge, put back the kernel settings they changed, remove
#           the host directories they created (/var/log/pods, /var/lib/cni, ...), then stop
#           kube-apiserver and etcd. Idempotent: stopping a stopped node is fine.
#   status  exit 0 when the node is Ready, 3 when kubelet is not running
#   env     print the cluster's env file: kube-apiserver's (KUBE_URL, KUBECONFIG, KUBECTL,
#           AUDIT_LOG, ...) plus NODE_NAME, NODE_IP, CONTAINERD_SOCK, KUBELET_LOG,
#           JOURNAL_DIR, CTR
#   logs    the tail of every daemon's log
#
# One node per machine: kubelet writes container logs under /var/log/pods with the
# /var/log/containers symlinks (fixed paths: what the node role reads) and rotates them at
# containerLogMaxSize 1Mi (3 files, older ones compressed). The pod network is the bridge
# `klg0`, 10.244.0.0/24 (bridge + host-local CNI plugins from /usr/lib/cni; containerd runs
# the loopback plugin itself). Services: 10.96.0.0/16, kube-proxy in iptables mode.
# kube-apiserver and the shared Elasticsearch listen on 127.0.0.1 only: pods on the host
# network reach them there; pods on the pod network reach Elasticsearch at
# 10.244.0.1:9200 (KLG_NODE_HOST_PORTS, see setup_bridge).
#
# kubelet's and containerd's output: PID 1 is not systemd here, so there is no journald.
# Each daemon's lines go to $NODE_DIR/<name>.log and, turned into Journal Export Format
# with the fields journald would add (_SYSTEMD_UNIT=<name>.service, SYSLOG_IDENTIFIER,
# PRIORITY from klog's severity, ...) by scripts/kube-node/journal-export.py, through
# systemd-journal-remote into the real journal file $NODE_DIR/journal/<name>.journal:
# the directory the node role's DaemonSet reads as a host's /var/log/journal.
#
# Images, no registry: klg.local/pause:1 (the sandbox: busybox `sleep`, which never
# exits) and klg.local/busybox:1 (busybox-static with its applets), written as OCI
# layout tars by scripts/kube-node/oci-image.py and imported with
# `ctr -n k8s.io images import`. Pods use imagePullPolicy Never or IfNotPresent.
#
# What these hosts need (measured): containerd's CRI `restrict_oom_score_adj = true`
# (root lacks CAP_SYS_RESOURCE, runc fails otherwise); kubelet with failCgroupV1: false
# (cgroup v1), cgroupDriver: cgroupfs (containerd 1.6 does not report its driver) and
# oomScoreAdj: 0.
#
# Environment: KUBE_DIR and KLG_CACHE_DIR as for scripts/kube-apiserver.sh; NODE_DIR
# (default $CACHE_DIR/k8s/node) holds containerd's and kubelet's state, logs, journal.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
WRAPPER_DIR="$SCRIPT_DIR/kube-apiserver"
KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
NODE_NAME=klg-node
POD_CIDR=10.244.0.0/24
READY_TIMEOUT=180

if [[ $EUID -eq 0 ]]; then
  CACHE_DIR="${KLG_CACHE_DIR:-/var/cache/kube-log-gateway}"
else
  CACHE_DIR="${KLG_CACHE_DIR:-$HOME/.cache/kube-log-gateway}"
fi
export KLG_CACHE_DIR="$CACHE_DIR"
BIN_DIR="$CACHE_DIR/k8s/$KUBE_VERSION"
KUBE_DIR="${KUBE_DIR:-$CACHE_DIR/k8s/instances/default}"
export KUBE_DIR
NODE_DIR="${NODE_DIR:-$CACHE_DIR/k8s/node}"
IMAGE_DIR="$CACHE_DIR/k8s/images"
SOCK="$NODE_DIR/containerd.sock"
CTR=(ctr --address "$SOCK" -n k8s.io)
# kubectl's discovery cache, here rather than in ~/.kube.
export KUBECACHEDIR="${KUBECACHEDIR:-$NODE_DIR/kubectl-cache}"

log() { printf 'kube-node: %s\n' "$*" >&2; }
die() { printf 'kube-node: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "containerd and kubelet need root"

live_pid() {
  local file="$1" marker="$2" pid
  [[ -f "$file" ]] || return 0
  pid="$(tr -dc '0-9' <"$file" 2>/dev/null || true)"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 0
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" && echo "$pid"
  return 0
}

show_log_tail() {
  [[ -s "$1" ]] || return 0
  printf '\n----- last lines of %s -----\n' "$1" >&2
  tail -n "${2:-40}" "$1" >&2
}

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ------------------------------------------------------------------------------ build

# find_go, ldflags, go_build_kube (shared with scripts/kube-apiserver.sh)
# shellcheck source=lib/kube-build.sh
source "$SCRIPT_DIR/lib/kube-build.sh"

# kube-controller-manager, kube-scheduler and kube-proxy, beside the binaries
# kube-apiserver.sh builds, from the same wrapper module and link flags.
build_control_plane() {
  local cmd blog="$BIN_DIR/build-node.log" stamp t0=$SECONDS
  stamp="$(cat "$WRAPPER_DIR/go.mod" "$WRAPPER_DIR/go.sum" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$BIN_DIR/kube-controller-manager" && -x "$BIN_DIR/kube-scheduler" && -x "$BIN_DIR/kube-proxy" &&
    "$(cat "$BIN_DIR/build-node.stamp" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  log "building kube-controller-manager, kube-scheduler and kube-proxy $KUBE_VERSION (once; log: $blog)"
  : >"$blog"
  for cmd in kube-controller-manager kube-scheduler kube-proxy; do
    go_build_kube "$blog" "$cmd"
  done
  echo "$stamp" >"$BIN_DIR/build-node.stamp"
  log "built in $((SECONDS - t0)) s"
}

# The two images every pod here needs, from Debian's busybox-static.
build_images() {
  local bb=/bin/busybox stamp args=() a
  stamp="$({ sha256sum "$bb" "$SCRIPT_DIR/kube-node/oci-image.py"; } | sha256sum | cut -d' ' -f1)"
  [[ -f "$IMAGE_DIR/pause.tar" && -f "$IMAGE_DIR/busybox.tar" && "$(cat "$IMAGE_DIR/stamp" 2>/dev/null)" == "$stamp" ]] && return 0
  mkdir -p "$IMAGE_DIR"
  file "$bb" 2>/dev/null | grep -q 'statically linked' || die "$bb is not statically linked (busybox-static)"
  for a in $("$bb" --list); do
    [[ "$a" == busybox ]] || args+=(--symlink "bin/$a:busybox")
  done
  python3 "$SCRIPT_DIR/kube-node/oci-image.py" --out "$IMAGE_DIR/busybox.tar" --name klg.local/busybox:1 \
    --file "$bb:bin/busybox:0755" "${args[@]}" --dir tmp:1777 --cmd '["sh"]' >/dev/null
  # The sandbox holds the pod's namespaces and must never exit; kubelet stops it with SIGKILL.
  python3 "$SCRIPT_DIR/kube-node/oci-image.py" --out "$IMAGE_DIR/pause.tar" --name klg.local/pause:1 \
    --file "$bb:bin/busybox:0755" --symlink bin/sleep:busybox \
    --entrypoint '["/bin/sleep","2147483647"]' --user 65535:65535 >/dev/null
  echo "$stamp" >"$IMAGE_DIR/stamp"
}

do_build() {
  apt_install containerd runc containernetworking-plugins busybox-static iptables iproute2 conntrack file systemd-journal-remote
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    die "CNI plugins missing in /usr/lib/cni (containernetworking-plugins)"
  bash "$SCRIPT_DIR/kube-apiserver.sh" build
  [[ -x "$BIN_DIR/kubelet" ]] || die "no kubelet in $BIN_DIR (scripts/kube-apiserver.sh build)"
  build_control_plane
  build_images
}

# ------------------------------------------------------------------------------ start

write_configs() {
  local pki="$KUBE_DIR/pki" n="$NODE_DIR"
  mkdir -p "$n/cni" "$n/kubelet" "$n/containerd" "$n/pki"
  cat >"$n/containerd.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "klg.local/pause:1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni"
EOF
  # containerd's CRI runs the loopback plugin for every pod itself, then this network.
  rm -f "$n/cni/"*.conf
  cat >"$n/cni/10-klg.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "klg",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "klg0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    }
  ]
}
EOF
  # kubelet's client certificate: user system:node:<name> in group system:nodes,
  # signed by kube-apiserver's client CA.
  if [[ ! -f "$n/pki/kubelet.crt" || "$n/pki/kubelet.crt" -ot "$pki/ca.crt" ]]; then
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:nodes/CN=system:node:$NODE_NAME" \
      -keyout "$n/pki/kubelet.key" -out "$n/pki/kubelet.csr" 2>/dev/null
    openssl x509 -req -in "$n/pki/kubelet.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 3650 -out "$n/pki/kubelet.crt" 2>/dev/null
    chmod 600 "$n/pki/kubelet.key"
  fi
  # shellcheck disable=SC1091
  source "$KUBE_DIR/env"
  cat >"$n/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: klg-test
    cluster: {server: "$KUBE_URL", certificate-authority: "$pki/ca.crt"}
users:
  - name: kubelet
    user: {client-certificate: "$n/pki/kubelet.crt", client-key: "$n/pki/kubelet.key"}
contexts:
  - name: kubelet
    context: {cluster: klg-test, user: kubelet}
current-context: kubelet
EOF
  cat >"$n/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 hosts; containerd 1.6 cannot report its cgroup driver; no CAP_SYS_RESOURCE.
failCgroupV1: false
cgroupDriver: cgroupfs
oomScoreAdj: 0
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCK
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: AlwaysAllow}
podCIDR: $POD_CIDR
resolvConf: /etc/resolv.conf
# What the node role is tested against: kubelet's own rotation.
containerLogMaxSize: 1Mi
containerLogMaxFiles: 3
containerLogMonitorInterval: 3s   # the shortest kubelet accepts
# A test machine's disk may be fuller than the defaults allow.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
}

ensure_rbac() {
  local kubectl=("$BIN_DIR/kubectl" --kubeconfig "$KUBE_DIR/admin.kubeconfig")
  # Kubernetes leaves the system:node role unbound (the Node authorizer does that
  # work in clusters that enable it); this cluster authorizes with RBAC alone.
  "${kubectl[@]}" get clusterrolebinding klg-system-nodes >/dev/null 2>&1 ||
    "${kubectl[@]}" create clusterrolebinding klg-system-nodes --clusterrole=system:node --group=system:nodes >/dev/null
}

# $1: name; the rest: the command. Its output goes to $NODE_DIR/<name>.log and, as
# journal entries of <name>.service, into $NODE_DIR/journal/<name>.journal (see below).
# setsid: the daemon leads its own process group, which stop_pid signals as a whole.
start_daemon() {
  local name="$1"
  shift
  local pidf="$NODE_DIR/$name.pid"
  [[ -n "$(live_pid "$pidf" "$NODE_DIR")" ]] && return 0
  mkdir -p "$NODE_DIR/journal"
  # PID 1 is not systemd here, so there is no journald: the daemon's lines become Journal
  # Export Format entries (journal-export.py) that systemd-journal-remote writes into a
  # real journal file, as journald would have for a systemd unit.
  setsid bash -c '
    log="$1" journal="$2" name="$3" exporter="$4"
    shift 4
    "$@" 2>&1 | tee -a "$log" |
      python3 "$exporter" --unit "$name.service" --identifier "$name" --pid "$$" |
      /lib/systemd/systemd-journal-remote --output="$journal" --split-mode=none - >/dev/null 2>&1
  ' "$name" "$NODE_DIR/$name.log" "$NODE_DIR/journal/$name.journal" "$name" \
    "$SCRIPT_DIR/kube-node/journal-export.py" "$@" </dev/null >/dev/null 2>&1 {NODE_LOCK_FD}>&- &
  echo $! >"$pidf"
}

wait_for() {
  local what="$1" secs="$2" logf="$3"
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      show_log_tail "$logf" 60
      die "$what not ready after $secs s (log: $logf)"
    fi
    sleep 0.5
  done
}

node_ready() {
  "$BIN_DIR/kubectl" --kubeconfig "$KUBE_DIR/admin.kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

# setup_bridge, teardown_bridge, node_ip, record_host_state, restore_host_state
# shellcheck source=lib/kube-node-host.sh
source "$SCRIPT_DIR/lib/kube-node-host.sh"

do_start() {
  do_build
  local t0=$SECONDS
  bash "$SCRIPT_DIR/kube-apiserver.sh" start >/dev/null {NODE_LOCK_FD}>&-
  mkdir -p "$NODE_DIR"
  record_host_state
  write_configs
  ensure_rbac
  local pki="$KUBE_DIR/pki" ip
  ip="$(node_ip)"
  [[ -n "$ip" ]] || die "no IPv4 address with a default route for the node"

  start_daemon kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig="$KUBE_DIR/admin.kubeconfig" --authentication-skip-lookup \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=false --allocate-node-cidrs=false \
    --cert-dir="$NODE_DIR/kcm-certs"
  start_daemon kube-scheduler "$BIN_DIR/kube-scheduler" \
    --kubeconfig="$KUBE_DIR/admin.kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --secure-port=0

  setup_bridge
  start_daemon kube-proxy "$BIN_DIR/kube-proxy" --kubeconfig="$KUBE_DIR/admin.kubeconfig" \
    --hostname-override="$NODE_NAME" --proxy-mode=iptables --cluster-cidr=10.244.0.0/16 \
    --conntrack-max-per-core=0 --bind-address=127.0.0.1 --iptables-localhost-nodeports=false \
    --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249

  start_daemon containerd containerd --config "$NODE_DIR/containerd.toml"
  wait_for containerd 30 "$NODE_DIR/containerd.log" "${CTR[@]}" version
  local img
  for img in pause busybox; do
    "${CTR[@]}" images import "$IMAGE_DIR/$img.tar" >/dev/null
  done

  mkdir -p /var/log/pods /var/log/containers
  start_daemon kubelet "$BIN_DIR/kubelet" --config="$NODE_DIR/kubelet.yaml" \
    --kubeconfig="$NODE_DIR/kubelet.kubeconfig" --hostname-override="$NODE_NAME" --node-ip="$ip" \
    --root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/kubelet/pki" --v=1
  wait_for "node $NODE_NAME" "$READY_TIMEOUT" "$NODE_DIR/kubelet.log" node_ready

  cat "$KUBE_DIR/env" >"$NODE_DIR/env"
  cat >>"$NODE_DIR/env" <<EOF
NODE_NAME=$NODE_NAME
NODE_IP=$ip
CONTAINERD_SOCK=$SOCK
KUBELET_LOG=$NODE_DIR/kubelet.log
JOURNAL_DIR=$NODE_DIR/journal
CTR="ctr --address $SOCK -n k8s.io"
EOF
  log "node $NODE_NAME Ready in $((SECONDS - t0)) s (env: $NODE_DIR/env)"
}

# ------------------------------------------------------------------------------- stop

stop_pid() {
  local pid="$1" name="$2" deadline
  [[ -n "$pid" ]] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) still running after 20 s, sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
}

# Every pod sandbox and container kubelet left, their shims, mounts and network.
remove_pods() {
  [[ -S "$SOCK" ]] || return 0
  local c t
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  sleep 1
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true
  done
  for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do
    "${CTR[@]}" containers delete "$c" >/dev/null 2>&1 || true
  done
}

# Every pod deleted through the API, so that kubelet stops them as it would any pod:
# containers killed, sandboxes' networks torn down by the CNI plugin (veth, address,
# network namespace), volumes unmounted. The controller manager and the scheduler are
# stopped first, so that nothing replaces them.
drain_pods() {
  local kubectl=("$BIN_DIR/kubectl" --kubeconfig "$KUBE_DIR/admin.kubeconfig" --request-timeout=20s)
  [[ -n "$(live_pid "$NODE_DIR/kubelet.pid" "$NODE_DIR")" && -f "$KUBE_DIR/admin.kubeconfig" ]] || return 0
  "${kubectl[@]}" get --raw /readyz >/dev/null 2>&1 || return 0
  "${kubectl[@]}" delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 60))
  while [[ -n "$("${CTR[@]}" tasks ls -q 2>/dev/null)" ]] && ((SECONDS < deadline)); do sleep 1; done
}

do_stop() {
  local name
  for name in kube-controller-manager kube-scheduler; do
    stop_pid "$(live_pid "$NODE_DIR/$name.pid" "$NODE_DIR")" "$name"
    rm -f "$NODE_DIR/$name.pid"
  done
  drain_pods
  stop_pid "$(live_pid "$NODE_DIR/kubelet.pid" "$NODE_DIR")" kubelet
  remove_pods
  for name in containerd kube-proxy; do
    stop_pid "$(live_pid "$NODE_DIR/$name.pid" "$NODE_DIR")" "$name"
    rm -f "$NODE_DIR/$name.pid"
  done
  rm -f "$NODE_DIR/kubelet.pid" "$NODE_DIR/env"
  # Mounts kubelet and containerd left under the node directory (pod volumes, rootfs).
  { grep -F " $NODE_DIR/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # kube-proxy's KUBE-* chains and rules.
  [[ -x "$BIN_DIR/kube-proxy" ]] && "$BIN_DIR/kube-proxy" --cleanup --proxy-mode=iptables >/dev/null 2>&1 || true
  # kubelet's canary chains (it recreates them at start).
  local t ipt
  for ipt in iptables ip6tables; do
    for t in nat filter mangle; do "$ipt" -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null || true; done
  done
  # ... and its KUBE-FIREWALL chain (drops non-loopback sources to 127.0.0.0/8; in
  # IPv6 too) and the hint chain telling other tools which iptables backend is in use.
  for ipt in iptables ip6tables; do
    while "$ipt" -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while "$ipt" -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    "$ipt" -F KUBE-FIREWALL 2>/dev/null || true
    "$ipt" -X KUBE-FIREWALL 2>/dev/null || true
    "$ipt" -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null || true
  done
  teardown_bridge
  restore_host_state
  bash "$SCRIPT_DIR/kube-apiserver.sh" stop
}

do_status() {
  if [[ -z "$(live_pid "$NODE_DIR/kubelet.pid" "$NODE_DIR")" ]]; then
    echo "stopped ($NODE_DIR)"
    return 3
  fi
  if node_ready; then
    echo "node $NODE_NAME Ready (kubelet pid $(cat "$NODE_DIR/kubelet.pid"), $NODE_DIR)"
  else
    echo "kubelet running, node $NODE_NAME not Ready (logs: $0 logs)"
    return 1
  fi
}

do_logs() {
  local f
  for f in kubelet containerd kube-proxy kube-scheduler kube-controller-manager; do
    [[ -f "$NODE_DIR/$f.log" ]] || continue
    printf -- '----- %s -----\n' "$NODE_DIR/$f.log"
    tail -n "${KUBE_LOG_LINES:-60}" "$NODE_DIR/$f.log"
  done
}

# The lock's fd, closed in the daemons start_daemon starts: inherited, it would keep the
# lock held for as long as they run.
NODE_LOCK_FD=
with_lock() {
  mkdir -p "$(dirname "$NODE_DIR")"
  exec {NODE_LOCK_FD}>"$NODE_DIR.lock"
  flock -w 3600 "$NODE_LOCK_FD" || die "timed out waiting for $NODE_DIR.lock"
  "$@"
  exec {NODE_LOCK_FD}>&-
}

case "${1:-}" in
  build) with_lock do_build ;;
  start) with_lock do_start ;;
  stop) with_lock do_stop ;;
  status) do_status ;;
  env) [[ -f "$NODE_DIR/env" ]] || die "not running ($NODE_DIR)"; cat "$NODE_DIR/env" ;;
  logs) do_logs ;;
  *)
    echo "usage: [KUBE_DIR=dir] [KLG_WEBHOOK_URL=...] $0 build|start|stop|status|env|logs" >&2
    exit 2
    ;;
esac
