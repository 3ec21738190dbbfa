#!/usr/bin/env bash
# One Elasticsearch node against a three-node cluster, on this machine: the same
# end-to-end audit load (release gateway, `loadgen` over mTLS) into
#   single      one node (port $BENCH_SINGLE_PORT, default 9204): 1 shard, 0 replicas
#   3n-replica  three nodes (scripts/elasticsearch.sh cluster-start, $BENCH_CLUSTER_PORT
#               default 9201-9203): 1 primary + 1 replica (a node may die)
#   3n-spread   the same three nodes: 3 primaries, 0 replicas (the work spread, no copy)
#
#   scripts/bench-cluster.sh [loadgen args...]     (default: --batches 500 --connections 4
#                                                   --duration 300: 200,000 events)
#
# For each: documents/s end to end (loadgen's start until every accepted event is
# searchable) and Elasticsearch CPU seconds per 10,000 documents, from the deltas of
# `_nodes/stats/process` cpu.total_in_millis summed over the nodes. Every node has a
# 512 MiB heap (ES_HEAP). Instances this script started are stopped at the end; the
# single node is wiped. Figures go to docs/benchmarks.md ("One node vs three") by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

single_port="${BENCH_SINGLE_PORT:-9204}"
cluster_port="${BENCH_CLUSTER_PORT:-9201}"
# Free ports unless given: other benchmarks may run on this machine at the same time.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
gw_port="${BENCH_PORT:-$(free_port)}"
admin_port="${BENCH_ADMIN_PORT:-$(free_port)}"
loadgen_args=("$@")
((${#loadgen_args[@]})) || loadgen_args=(--batches 500 --connections 4 --duration 300)

es() { ES_PORT="$single_port" bash scripts/elasticsearch.sh "$@"; }
cluster() { ES_PORT="$cluster_port" ES_CLUSTER_NODES=3 bash scripts/elasticsearch.sh "$@"; }

work="$(mktemp -d /tmp/klg-bench-cluster.XXXXXX)"
gw_pid=""
started_single=0
started_cluster=0
cleanup() {
  [[ -n "$gw_pid" ]] && { kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; }
  ((started_single)) && es wipe >/dev/null 2>&1 || true
  ((started_cluster)) && cluster cluster-stop >/dev/null 2>&1 || true
  [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --bin kube-log-gateway --bin loadgen
bin="${CARGO_TARGET_DIR:-target}/release"
"$bin/kube-log-gateway" certs --out "$work/certs" >/dev/null

# Sum of cpu.total_in_millis over the nodes that answer at $1.
es_cpu_ms() {
  curl -s -m 30 "$1/_nodes/stats/process?filter_path=nodes.*.process.cpu.total_in_millis" |
    python3 -c 'import json,sys; print(sum(n["process"]["cpu"]["total_in_millis"] for n in json.load(sys.stdin)["nodes"].values()))'
}

# $1 name, $2 shards, $3 replicas, $4.. the node URLs (the first answers the stats).
run() {
  local name="$1" shards="$2" replicas="$3" urls prefix dir
  shift 3
  urls="$(printf '"%s", ' "$@")"
  prefix="benchcl$(date +%s)"
  dir="$work/$name"
  mkdir -p "$dir"
  cat >"$dir/gateway.yaml" <<YAML
cluster_name: bench
data_dir: $dir/data
server:
  listen: 127.0.0.1:$gw_port
  tls:
    cert_file: $work/certs/server.crt
    key_file: $work/certs/server.key
    client_ca_file: $work/certs/ca.crt
admin:
  listen: 127.0.0.1:$admin_port
log:
  level: warn
spool:
  max_bytes: 34359738368
elasticsearch:
  urls: [${urls%, }]
  indices:
    audit: "$prefix-audit-%Y.%m.%d"
    dead_letter: "$prefix-deadletter-%Y.%m.%d"
  template:
    number_of_shards: $shards
    number_of_replicas: $replicas
    refresh_interval: 30s
YAML
  "$bin/kube-log-gateway" serve --config "$dir/gateway.yaml" 2>"$dir/gateway.log" &
  gw_pid=$!
  local up=0
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null && { up=1; break; }; sleep 0.1; done
  ((up)) || { cat "$dir/gateway.log" >&2; echo "bench-cluster: the gateway did not start" >&2; exit 1; }

  local es_url="$1" t0 t2 e0 e2 accepted n
  e0=$(es_cpu_ms "$es_url")
  t0=$(date +%s.%N)
  "$bin/loadgen" --url "https://127.0.0.1:$gw_port/audit" --ca "$work/certs/ca.crt" \
    --cert "$work/certs/client.crt" --key "$work/certs/client.key" --run-id "$prefix" \
    "${loadgen_args[@]}" >"$dir/loadgen.out"
  accepted=$(awk '/^accepted events:/ {print $3}' "$dir/loadgen.out")
  while :; do
    curl -s -XPOST "$es_url/$prefix-audit-*/_refresh" >/dev/null
    n=$(curl -s "$es_url/$prefix-audit-*/_count" | sed -E 's/.*"count":([0-9]+).*/\1/')
    [[ "$n" =~ ^[0-9]+$ && "$n" -ge "$accepted" ]] && break
    sleep 1
  done
  t2=$(date +%s.%N)
  e2=$(es_cpu_ms "$es_url")
  kill "$gw_pid"
  wait "$gw_pid" 2>/dev/null || true
  gw_pid=""
  curl -s -XDELETE "$es_url/$prefix-*" >/dev/null
  python3 - "$name" "$shards" "$replicas" "$#" "$n" "$t0" "$t2" "$e0" "$e2" <<'PY'
import sys
name, shards, replicas, nodes, n, t0, t2, e0, e2 = sys.argv[1:]
n, wall, cpu = int(n), float(t2) - float(t0), (int(e2) - int(e0)) / 1000
print(f"| {name} | {nodes} | {shards} | {replicas} | {n:,} | {wall:.1f} s | **{n / wall:,.0f}** "
      f"| {cpu:.1f} s ({cpu / wall:.2f} cores) | {cpu / (n / 10000):.2f} s |")
PY
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); loadgen ${loadgen_args[*]}"
echo "| layout | nodes | primaries | replicas | documents | all searchable after | documents/s end to end | Elasticsearch CPU (all nodes) | ES CPU s per 10,000 docs |"
echo "|---|---|---|---|---|---|---|---|---|"

es status >/dev/null 2>&1 || started_single=1
es start >/dev/null
run single 1 0 "http://127.0.0.1:$single_port"
if ((started_single)); then es wipe >/dev/null; started_single=0; fi

cluster cluster-status >/dev/null 2>&1 || started_cluster=1
cluster cluster-start >/dev/null
nodes=("http://127.0.0.1:$cluster_port" "http://127.0.0.1:$((cluster_port + 1))" "http://127.0.0.1:$((cluster_port + 2))")
run 3n-replica 1 1 "${nodes[@]}"
run 3n-spread 3 0 "${nodes[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
