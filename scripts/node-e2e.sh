#!/usr/bin/env bash
# End to end on a real node, installed with the chart:
#
#   scripts/node-e2e.sh
#
# 1. cluster: scripts/kube-node.sh start — a fresh kube-apiserver (its own etcd and audit
#    log, in a temporary KUBE_DIR) whose audit webhook points at the gateway pod,
#    kube-controller-manager, kube-scheduler, containerd and kubelet; node Ready.
# 2. image: scripts/image.sh import dev — the release binary on a minimal base.
# 3. chart checks: helm lint (default values, the test values, cert-manager on);
#    helm template (default values) | kubectl apply --dry-run=server --validate=strict.
# 4. helm install with scripts/kube-node/test-values.yaml: the gateway (StatefulSet, two
#    replicas on the pod network, each with its spool on a hostPath PersistentVolume,
#    behind the Service's clusterIP 10.96.100.100, which kube-apiserver posts to through
#    kube-proxy) and the node DaemonSet (hostNetwork; reads /var/log/containers,
#    /var/log/pods and the journal directory kube-node.sh writes kubelet's and
#    containerd's lines into).
# 5. workloads: a Deployment (2 pods) and a Job (2 pods) print numbered lines in bursts
#    of more than 1 MiB, so kubelet rotates their logs (containerLogMaxSize 1Mi,
#    compressing older files); the Deployment's pods are deleted, with their log files,
#    as soon as they have printed their last line.
#    Asserted: every line exactly once, with the pod's labels, its Deployment or Job and
#    its image; kubelet's and containerd's journal entries; every audit event
#    kube-apiserver logged since the gateway was ready (--audit-log-path is the truth).
# 6. upgrade under traffic: scripts/image.sh import dev2 (a rebuilt image: another
#    digest), then helm upgrade while a Deployment prints a numbered line every 10 ms and
#    a loop keeps the API busy; both roles roll (new pods with the new image); the
#    lines and the audit events of the whole run are checked again, exactly once.
#
# Needs root (containerd, kubelet), an Elasticsearch on 127.0.0.1 (KLG_TEST_ES_URL,
# default http://127.0.0.1:9200; pods on the pod network reach it at 10.244.0.1 on the
# same port), and the binaries scripts/kube-apiserver.sh and scripts/kube-node.sh build.
# Everything of the run lives in one temporary directory (KLG_KUBE_TEST_ROOT, default
# TMPDIR or /tmp): kube-apiserver's instance, the node's state and journal, the spool
# volumes. Indices are named klg-node-e2e-<run>-* and deleted at the end; the cluster is
# stopped on exit (scripts/kube-node.sh stop) and the directory removed. Prints each
# phase's duration.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_DIR="$(pwd)"
ES="${KLG_TEST_ES_URL:-http://127.0.0.1:9200}"
RUN="klg-node-e2e-$(date +%s)-$$"
NS=klg
WORK="$(mktemp -d "${KLG_KUBE_TEST_ROOT:-${TMPDIR:-/tmp}}/node-e2e.XXXXXX")"
export KUBE_DIR="$WORK/kube"
# The node's state (containerd's images and containers, kubelet's pods, the journal the
# DaemonSet reads) is this run's own, so each run's journal holds only its own entries.
export NODE_DIR="$WORK/node"
LINES=20000 # per pod: ~2.5 MB of log, two kubelet rotations at 1 MiB
STEADY_LINES=6000 # the upgrade's printer: one line every 10 ms, about a minute

# kubectl's discovery cache: this run's, not ~/.kube.
export KUBECACHEDIR="$WORK/kubectl-cache"
# e2e_check.py SUBCOMMAND ARGS... against this run's Elasticsearch.
check() {
  local cmd="$1"
  shift
  python3 scripts/kube-node/e2e_check.py "$cmd" --es "$ES" "$@"
}

log() { printf '\n==> node-e2e: %s\n' "$*"; }
die() { printf 'node-e2e: ERROR: %s\n' "$*" >&2; exit 1; }
t0=$SECONDS
phase_start=$SECONDS
phase() {
  printf 'node-e2e: phase took %d s\n' "$((SECONDS - phase_start))"
  phase_start=$SECONDS
  log "$*"
}

busy_pid=
cleanup() {
  local rc=$?
  [[ -n "$busy_pid" ]] && kill "$busy_pid" 2>/dev/null || true
  if ((rc != 0)); then
    bash scripts/kube-node.sh logs 2>/dev/null | tail -n 80 || true
    [[ -n "${KUBECTL:-}" ]] && "$KUBECTL" get pods -A -o wide 2>/dev/null || true
  fi
  bash scripts/kube-node.sh stop >/dev/null 2>&1 || true
  curl -s -X DELETE "$ES/$RUN-*" >/dev/null 2>&1 || true
  # Never through a mount the stop left behind (a pod volume, a container's rootfs).
  if grep -qF " $WORK/" /proc/mounts; then
    printf 'node-e2e: mounts left under %s, not removing it:\n' "$WORK" >&2
    grep -F " $WORK/" /proc/mounts >&2
    ((rc != 0)) || rc=1
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Pods on the pod network reach the loopback Elasticsearch at the bridge address, on the
# same port (kube-node.sh forwards it; stop removes the rule).
[[ "$ES" =~ ^http://127\.0\.0\.1:([0-9]+)/?$ ]] || die "KLG_TEST_ES_URL must be http://127.0.0.1:PORT (got '$ES')"
ES_PORT="${BASH_REMATCH[1]}"
export KLG_NODE_HOST_PORTS="$ES_PORT"
curl -sf "$ES/_cluster/health" >/dev/null || die "no Elasticsearch answers on $ES (scripts/elasticsearch.sh start)"

log "cluster: scripts/kube-node.sh start (KUBE_DIR=$KUBE_DIR)"
HELM="$(bash scripts/helm.sh build)"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
# The release binary: the image's (scripts/image.sh builds the same), and the certificates.
cargo build --release --locked --bin kube-log-gateway
"${CARGO_TARGET_DIR:-target}/release/kube-log-gateway" certs --out "$WORK/certs" --san 10.96.100.100 >/dev/null
KLG_WEBHOOK_URL=https://10.96.100.100:8443/audit KLG_WEBHOOK_CA="$WORK/certs/ca.crt" \
  KLG_WEBHOOK_CERT="$WORK/certs/client.crt" KLG_WEBHOOK_KEY="$WORK/certs/client.key" \
  bash scripts/kube-node.sh start
# shellcheck disable=SC1090
source <(bash scripts/kube-node.sh env)
export KUBECONFIG
k() { "$KUBECTL" "$@"; }

phase "image: scripts/image.sh import dev"
bash scripts/image.sh import dev >/dev/null

phase "chart: helm lint, helm template | kubectl apply --dry-run=server --validate=strict"
CHART=charts/kube-log-gateway
KUBECTL="$KUBECTL" KUBECONFIG="$KUBECONFIG" bash scripts/helm.sh check

phase "install: helm install (gateway + node roles)"
k create namespace "$NS" >/dev/null
k -n "$NS" create secret generic klg-e2e-tls --from-file=tls.crt="$WORK/certs/server.crt" \
  --from-file=tls.key="$WORK/certs/server.key" --from-file=ca.crt="$WORK/certs/ca.crt" >/dev/null
# The spool volumes: static hostPath PersistentVolumes (no provisioner on this cluster),
# owned by the gateway's uid (hostPath volumes are not chowned to fsGroup).
{
  echo "apiVersion: storage.k8s.io/v1"
  echo "kind: StorageClass"
  echo "metadata: {name: klg-e2e-local}"
  echo "provisioner: kubernetes.io/no-provisioner"
  echo "volumeBindingMode: WaitForFirstConsumer"
  for i in 0 1; do
    mkdir -p "$WORK/pv-$i"
    chown 10001:10001 "$WORK/pv-$i"
    echo "---"
    echo "apiVersion: v1"
    echo "kind: PersistentVolume"
    echo "metadata: {name: klg-e2e-spool-$i}"
    echo "spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], storageClassName: klg-e2e-local,"
    echo "  persistentVolumeReclaimPolicy: Retain, hostPath: {path: $WORK/pv-$i, type: Directory}}"
  done
} | k apply -f - >/dev/null
cat >"$WORK/run-values.yaml" <<EOF
clusterName: $RUN
elasticsearch:
  urls: ["http://10.244.0.1:$ES_PORT"]
gateway:
  config:
    elasticsearch:
      indices: {audit: "$RUN-audit-%Y.%m.%d", dead_letter: "$RUN-deadletter-%Y.%m.%d"}
node:
  journalHostPaths: ["$JOURNAL_DIR"]
  dataHostPath: "$WORK/node-data"
  kubernetes:
    apiURL: "$KUBE_URL"
  config:
    sources:
      journald: {start_at: head}
    elasticsearch:
      urls: ["http://127.0.0.1:$ES_PORT"]
      indices: {kubelet: "$RUN-kubelet-%Y.%m.%d", containers: "$RUN-containers-%Y.%m.%d", dead_letter: "$RUN-deadletter-%Y.%m.%d"}
EOF
"$HELM" install klg "$CHART" -n "$NS" -f scripts/kube-node/test-values.yaml -f "$WORK/run-values.yaml" \
  --wait --timeout 5m
since="$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"
curl -sf --cacert "$WORK/certs/ca.crt" --cert "$WORK/certs/client.crt" --key "$WORK/certs/client.key" \
  -o /dev/null -w 'the gateway Service answers on 10.96.100.100:8443 (HTTP %{http_code} to GET)\n' \
  https://10.96.100.100:8443/audit || true
k -n "$NS" get pods -o wide

phase "workloads: a Deployment and a Job print $LINES numbered lines each, rotated by kubelet"
k create namespace shop >/dev/null
# The shell loop a printing pod runs (a YAML block scalar line: no quoting needed). $1:
# lines; $2: what follows each line (a pause). Every line is "e2e <pod> <n> ...".
printer() {
  echo "i=1; while [ \$i -le $1 ]; do echo \"e2e \$POD_NAME \$i $(printf 'x%.0s' $(seq 1 90))\"; $2 i=\$((i+1)); done; echo \"e2e \$POD_NAME done\""
}
# Bursts of 10,000 lines (~1.4 MB with the CRI prefix), a pause for kubelet's rotation.
burst='if [ $((i % 10000)) -eq 0 ]; then sleep 5; fi;'
pod_name_env='[{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]'
cat >"$WORK/workloads.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: printer, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: printer}}
  template:
    metadata: {labels: {app: printer, tier: e2e}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: print
          image: klg.local/busybox:1
          imagePullPolicy: Never
          env: $pod_name_env
          command:
            - sh
            - -c
            - |
              $(printer "$LINES" "$burst"); exec sleep 100000
---
apiVersion: batch/v1
kind: Job
metadata: {name: batch, namespace: shop}
spec:
  completions: 2
  parallelism: 2
  template:
    metadata: {labels: {app: batch, tier: e2e}}
    spec:
      restartPolicy: Never
      containers:
        - name: print
          image: klg.local/busybox:1
          imagePullPolicy: Never
          env: $pod_name_env
          command:
            - sh
            - -c
            - |
              $(printer "$LINES" "$burst")
EOF
k apply -f "$WORK/workloads.yaml" >/dev/null
# Wait for each pod's last line in its log file, then delete the Deployment's pods at
# once (kubelet removes their log directories with them).
expect="$WORK/expect.json"
echo "[]" >"$expect"
wait_done() { # $1: label selector, $2: owner kind, $3: owner name, $4: expected pods, $5: lines each
  local sel="$1" kind="$2" owner="$3" want="$4" lines="$5" deadline=$((SECONDS + 300)) pods p uid
  while :; do
    pods="$(k -n shop get pods -l "$sel" -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid}{"\n"}{end}')"
    local n=0
    while read -r p uid; do
      [[ -n "$p" ]] || continue
      grep -qs "e2e $p done" /var/log/pods/shop_"$p"_"$uid"/print/*.log && n=$((n + 1))
    done <<<"$pods"
    ((n >= want)) && break
    ((SECONDS < deadline)) || die "pods $sel did not print their last line within 300 s"
    sleep 1
  done
  while read -r p uid; do
    [[ -n "$p" ]] || continue
    python3 - "$expect" "$p" "$kind" "$owner" "$lines" "$sel" <<'PY'
import json, sys
f, pod, kind, owner, lines, sel = sys.argv[1:]
app = sel.split("=", 1)[1]
e = json.load(open(f))
e.append({"pod": pod, "namespace": "shop", "lines": int(lines), "labels": {"app": app, "tier": "e2e"},
          "owner": {"kind": kind, "name": owner}, "image": "klg.local/busybox:1"})
json.dump(e, open(f, "w"))
PY
  done <<<"$pods"
  echo "$pods" | cut -d' ' -f1
}
printers="$(wait_done app=printer Deployment printer 2 "$LINES")"
k -n shop scale deployment printer --replicas=0 >/dev/null
k -n shop delete pod $printers --grace-period=1 --wait=true >/dev/null 2>&1 || true
wait_done app=batch Job batch 2 "$LINES" >/dev/null
k -n shop wait --for=condition=complete job/batch --timeout=120s >/dev/null
rotated="$(find /var/log/pods -path '*shop_batch*' -name '*.log.*' | wc -l)"
echo "rotated files of the Job's pods: $rotated ($(find /var/log/pods -path '*shop_batch*' -name '*.gz' | wc -l) compressed)"
((rotated > 0)) || die "kubelet rotated none of the Job's logs: the test would not cover rotation"

phase "assert: lines, journal, audit events in Elasticsearch"
check containers --index "$RUN-containers-*" --expect "$expect" --timeout 180
check journal --index "$RUN-kubelet-*" --journal-dir "$JOURNAL_DIR" --timeout 120
check audit --index "$RUN-audit-*" --audit-log "$AUDIT_LOG" --since "$since" --timeout 120

phase "upgrade under traffic: helm upgrade to a rebuilt image while pods print and the API is busy"
bash scripts/image.sh import dev2 >/dev/null
old_gw="$(k -n "$NS" get pods -l app.kubernetes.io/component=gateway -o jsonpath='{.items[*].metadata.uid}')"
old_node="$(k -n "$NS" get pods -l app.kubernetes.io/component=node -o jsonpath='{.items[*].metadata.uid}')"
cat >"$WORK/steady.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: steady, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: steady}}
  template:
    metadata: {labels: {app: steady, tier: e2e}}
    spec:
      containers:
        - name: print
          image: klg.local/busybox:1
          imagePullPolicy: Never
          env: $pod_name_env
          command:
            - sh
            - -c
            - |
              $(printer "$STEADY_LINES" "usleep 10000;"); exec sleep 100000
EOF
k apply -f "$WORK/steady.yaml" >/dev/null
k -n shop rollout status deployment/steady --timeout=120s >/dev/null
( i=0; while :; do
    k -n shop create configmap "busy-$i" --from-literal=i="$i" >/dev/null 2>&1 || true
    k -n shop delete configmap "busy-$i" >/dev/null 2>&1 || true
    i=$((i + 1))
  done ) &
busy_pid=$!
"$HELM" upgrade klg "$CHART" -n "$NS" -f scripts/kube-node/test-values.yaml -f "$WORK/run-values.yaml" \
  --set image.tag=dev2 --wait --timeout 5m
k -n "$NS" rollout status statefulset/klg-kube-log-gateway --timeout=300s
k -n "$NS" rollout status daemonset/klg-kube-log-gateway-node --timeout=300s
new_gw="$(k -n "$NS" get pods -l app.kubernetes.io/component=gateway -o jsonpath='{.items[*].metadata.uid}')"
new_node="$(k -n "$NS" get pods -l app.kubernetes.io/component=node -o jsonpath='{.items[*].metadata.uid}')"
[[ "$new_gw" != "$old_gw" && "$new_node" != "$old_node" ]] || die "helm upgrade did not roll both roles"
k -n "$NS" get pods -o jsonpath='{range .items[*]}{.metadata.name}: {.spec.containers[0].image}{"\n"}{end}' |
  tee "$WORK/images.txt"
! grep -v ':dev2$' "$WORK/images.txt" || die "a pod still runs the old image after the upgrade"
wait_done app=steady Deployment steady 1 "$STEADY_LINES" >/dev/null
kill "$busy_pid" 2>/dev/null || true
wait "$busy_pid" 2>/dev/null || true
busy_pid=

phase "assert after the upgrade: every line and audit event of the run, exactly once"
check containers --index "$RUN-containers-*" --expect "$expect" --timeout 240
check audit --index "$RUN-audit-*" --audit-log "$AUDIT_LOG" --since "$since" --timeout 240
check journal --index "$RUN-kubelet-*" --journal-dir "$JOURNAL_DIR" --timeout 120
phase "done"
printf 'node-e2e: passed in %d s\n' "$((SECONDS - t0))"
