#!/usr/bin/env bash
# Benchmarks the audit webhook with the release build and the `loadgen` binary.
#
#   scripts/bench-webhook.sh accept [loadgen args...]  # Elasticsearch out of the loop (unreachable):
#                                                      # webhook + TLS + client certs + spool fsync
#   scripts/bench-webhook.sh e2e [loadgen args...]     # into the local Elasticsearch (scripts/elasticsearch.sh)
#
# Prints loadgen's figures and the gateway's CPU time (user+system, both cores)
# and peak RSS (VmHWM). For e2e, also the time until every accepted event is
# searchable, and the end-to-end rate. Figures go to docs/benchmarks.md by hand.
#
# ES_CONCURRENCY=fixed|adaptive and ES_MAX_IN_FLIGHT=N set elasticsearch.concurrency
# and elasticsearch.max_in_flight (default: the gateway's defaults); the
# concurrency limit is sampled every second and summarized at the end.
#
# BENCH_BIN=DIR runs the kube-log-gateway and loadgen binaries found in DIR
# instead of building (for A/B runs of two builds, interleaved).
# PERF=FILE records the gateway with `perf record -F 999 -g` for the whole load
# (`perf report -i FILE --no-children --sort symbol` reads it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-accept}"
shift || true
work="$(mktemp -d /tmp/klg-bench.XXXXXX)"
trap 'kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT

if [[ -n "${BENCH_BIN:-}" ]]; then
  bin="$BENCH_BIN"
else
  cargo build --release --quiet --bin kube-log-gateway --bin loadgen
  bin=target/release
fi
"$bin/kube-log-gateway" certs --out "$work/certs" >/dev/null

case "$mode" in
  accept) es_url="http://127.0.0.1:1" ;; # nothing listens: the sink retries, the spool absorbs
  e2e)
    bash scripts/elasticsearch.sh start >/dev/null
    es_url="http://127.0.0.1:${ES_PORT:-9200}"
    ;;
  *) echo "usage: $0 accept|e2e [loadgen args...]" >&2; exit 2 ;;
esac
prefix="bench$(date +%s)"
cat >"$work/gateway.yaml" <<YAML
cluster_name: bench
data_dir: $work/data
server:
  listen: 127.0.0.1:${BENCH_PORT:-28443}
  tls:
    cert_file: $work/certs/server.crt
    key_file: $work/certs/server.key
    client_ca_file: $work/certs/ca.crt
admin:
  listen: 127.0.0.1:${BENCH_ADMIN_PORT:-29464}
log:
  level: warn
spool:
  max_bytes: 34359738368
elasticsearch:
  urls: ["$es_url"]
  indices:
    audit: "$prefix-audit-%Y.%m.%d"
    dead_letter: "$prefix-deadletter-%Y.%m.%d"
  template:
    number_of_replicas: 0
    refresh_interval: 30s
${ES_CONCURRENCY:+  concurrency: $ES_CONCURRENCY}
${ES_MAX_IN_FLIGHT:+  max_in_flight: $ES_MAX_IN_FLIGHT}
YAML
"$bin/kube-log-gateway" serve --config "$work/gateway.yaml" 2>"$work/gateway.log" &
gw_pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:${BENCH_ADMIN_PORT:-29464}/healthz >/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/${1:-$gw_pid}/stat"; }
es_pid=""
if [[ "$mode" == e2e ]]; then
  es_pid=$(cat "${KLG_CACHE_DIR:-/var/cache/kube-log-gateway}/instances/${ES_PORT:-9200}/es.pid" 2>/dev/null || true)
fi
hz=$(getconf CLK_TCK)
# PLOT=FILE.png: sample /metrics every second and draw the run (scripts/metrics-plot.py).
sampler=""
if [[ -n "${PLOT:-}" ]]; then
  venv="${KLG_CACHE_DIR:-/var/cache/kube-log-gateway}/venv-plot"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet matplotlib
  fi
  "$venv/bin/python" scripts/metrics-plot.py sample --admin "http://127.0.0.1:${BENCH_ADMIN_PORT:-29464}" \
    --out "$work/samples.csv" --es-pid "${es_pid:-0}" &
  sampler=$!
fi
# The concurrency limit, once a second, for the summary at the end.
(while sleep 1; do
  curl -s "http://127.0.0.1:${BENCH_ADMIN_PORT:-29464}/metrics" | awk '/^klg_elasticsearch_concurrency_limit / {print $2}'
done) >"$work/limit.samples" 2>/dev/null &
limit_sampler=$!
perf_pid=""
if [[ -n "${PERF:-}" ]]; then
  perf record -F 999 -g -o "$PERF" -p "$gw_pid" 2>/dev/null >/dev/null &
  perf_pid=$!
fi
t0=$(date +%s.%N); c0=$(cpu_ticks)
[[ -n "$es_pid" ]] && e0=$(cpu_ticks "$es_pid")
"$bin/loadgen" --url https://127.0.0.1:${BENCH_PORT:-28443}/audit --ca "$work/certs/ca.crt" \
  --cert "$work/certs/client.crt" --key "$work/certs/client.key" --run-id "$prefix" "$@" | tee "$work/loadgen.out"
t1=$(date +%s.%N); c1=$(cpu_ticks)
if [[ -n "$perf_pid" ]]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
accepted=$(awk '/^accepted events:/ {print $3}' "$work/loadgen.out")

if [[ "$mode" == e2e ]]; then
  index="$prefix-audit-*"
  while :; do
    curl -s -XPOST "$es_url/$index/_refresh" >/dev/null
    n=$(curl -s "$es_url/$index/_count" | sed -E 's/.*"count":([0-9]+).*/\1/')
    [[ "$n" -ge "$accepted" ]] && break
    sleep 1
  done
  t2=$(date +%s.%N); c2=$(cpu_ticks)
  [[ -n "$es_pid" ]] && e2=$(cpu_ticks "$es_pid") && \
    echo "elasticsearch CPU during e2e:   $(echo "scale=2; ($e2 - $e0) / $hz" | bc) s over $(echo "$t2 - $t0" | bc) s wall (of 2 cores)"
  echo "all $n events searchable after: $(echo "$t2 - $t0" | bc) s"
  echo "end-to-end events/s:            $(echo "$n / ($t2 - $t0)" | bc)"
  echo "gateway CPU during e2e:         $(echo "scale=2; ($c2 - $c0) / $hz" | bc) s over $(echo "$t2 - $t0" | bc) s wall (of 2 cores)"
  curl -s -XDELETE "$es_url/$prefix-*" >/dev/null
fi
kill "$limit_sampler" 2>/dev/null; wait "$limit_sampler" 2>/dev/null || true
echo "concurrency limit (1/s samples): $(sort -n "$work/limit.samples" | uniq -c | awk '{printf "%s×%s ", $1, $2}')(last $(tail -1 "$work/limit.samples"))"
if [[ -n "$sampler" ]]; then
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  "$venv/bin/python" scripts/metrics-plot.py plot "$work/samples.csv" --out "$PLOT" \
    --title "Audit webhook $mode: $* (2 cores, 24 GiB; load $(cut -d' ' -f1-3 /proc/loadavg))"
fi
echo "gateway CPU during load:        $(echo "scale=2; ($c1 - $c0) / $hz" | bc) s over $(echo "scale=2; $t1 - $t0" | bc) s wall (of 2 cores)"
echo "gateway peak RSS:               $(awk '/VmHWM/ {print $2, $3}' "/proc/$gw_pid/status")"
echo "spool size on disk:             $(du -sh "$work/data" | cut -f1)"
