#!/usr/bin/env bash
# Benchmarks the container log source.
#
#   scripts/bench-containers.sh tail [--mb 500] [--files 8]   # read+parse+reassemble+normalize,
#                                                             # Elasticsearch out of the loop
#   scripts/bench-containers.sh e2e [MB]                      # the release gateway into the local
#                                                             # Elasticsearch (default 100 MB)
#
# Generated CRI logs live in /tmp/klg-bench-containers (tail) and /tmp/klg-e2e-data
# (e2e) and are reused; they are never committed. Figures go to docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-tail}"
shift || true
case "$mode" in
  tail)
    cargo bench --bench containers_tail --no-run --quiet
    bench="$(ls -t target/release/deps/containers_tail-* | grep -v '\.d$' | head -1)"
    /usr/bin/time -v "$bench" --bench "$@" 2>"${TMPDIR:-/tmp}/klg-bench-time.txt"
    grep -E 'Maximum resident|User time|System time|Elapsed' "${TMPDIR:-/tmp}/klg-bench-time.txt"
    ;;
  e2e)
    mb="${1:-100}"
    data=/tmp/klg-e2e-data
    cargo bench --bench containers_tail --no-run --quiet
    bench="$(ls -t target/release/deps/containers_tail-* | grep -v '\.d$' | head -1)"
    docs=$("$bench" --bench --mb "$mb" --dir "$data" | sed -E 's/.* lines\/s, ([0-9]+) documents.*/\1/')
    cargo build --release --quiet --bin kube-log-gateway
    bash scripts/elasticsearch.sh start >/dev/null
    es="http://127.0.0.1:${ES_PORT:-9200}"
    work="$(mktemp -d /tmp/klg-bench-ctr.XXXXXX)"
    prefix="benchctr$(date +%s)"
    trap 'kill "$gw_pid" 2>/dev/null || true; wait "$wrap_pid" 2>/dev/null || true; curl -s -XDELETE "$es/$prefix-*" >/dev/null; rm -rf "$work"' EXIT
    # JOURNAL_DIR (journal files, e.g. from `journald-<hash> generate DIR N` of the journald
    # bench) turns the journald source on beside the containers one: both node sources at
    # once. JOURNAL_ENTRIES is how many of its entries match kubelet.service.
    journald_yaml=""
    expect=$docs
    if [[ -n "${JOURNAL_DIR:-}" ]]; then
      journald_yaml="  journald:
    directories: [\"$JOURNAL_DIR\"]
    units: [kubelet.service]
    start_at: head"
      expect=$((docs + ${JOURNAL_ENTRIES:?JOURNAL_ENTRIES: the kubelet.service entries in JOURNAL_DIR}))
    fi
    cat >"$work/node.yaml" <<YAML
cluster_name: bench
data_dir: $work/data
admin:
  listen: 127.0.0.1:${BENCH_ADMIN_PORT:-29465}
log:
  level: warn
sources:
  containers:
    paths: ["$data/*.log"]
$journald_yaml
elasticsearch:
  urls: ["$es"]
  indices:
    containers: "$prefix-containers-%Y.%m.%d"
    kubelet: "$prefix-journald-%Y.%m.%d"
    dead_letter: "$prefix-deadletter-%Y.%m.%d"
  template:
    number_of_replicas: 0
    refresh_interval: 30s
YAML
    start=$(date +%s.%N)
    ${BENCH_WRAP:-} target/release/kube-log-gateway serve --config "$work/node.yaml" 2>"$work/gateway.log" &
    gw_pid=$! wrap_pid=$!
    if [[ -n "${BENCH_WRAP:-}" ]]; then
      # The gateway is the wrapper's descendant: sample and stop it, not the wrapper
      # (which then writes its own results and exits; the trap waits for it).
      gw_bin=$(readlink -f target/release/kube-log-gateway)
      found=""
      for _ in $(seq 1 300); do
        for p in $wrap_pid $(pgrep -f kube-log-gateway || true); do
          [[ "$(readlink -f "/proc/$p/exe" 2>/dev/null)" == "$gw_bin" ]] && found=$p && break
        done
        [[ -n "$found" ]] && break
        sleep 0.1
      done
      [[ -n "$found" ]] || { echo "bench-containers: no gateway process under BENCH_WRAP" >&2; exit 1; }
      gw_pid=$found
    fi
    # Peak RssAnon (heap) and RssFile (mapped files: journal windows, the binary) apart,
    # sampled every 0.2 s: VmHWM only has their peak sum.
    ( anon=0 file=0
      while [[ -r /proc/$gw_pid/status ]]; do
        read -r a f < <(awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print a+0, f+0}' "/proc/$gw_pid/status" 2>/dev/null || echo "0 0")
        ((a > anon)) && anon=$a
        ((f > file)) && file=$f
        echo "$anon $file" 2>/dev/null >"$work/rss"
        sleep 0.2
      done ) &
    while :; do
      sleep 1
      curl -s -XPOST "$es/$prefix-*/_refresh" >/dev/null || true
      n=$(curl -s "$es/$prefix-containers-*,$prefix-journald-*/_count?allow_no_indices=true" | sed -E 's/.*"count":([0-9]+).*/\1/')
      [[ "$n" =~ ^[0-9]+$ ]] || n=0
      ((n >= expect)) && break
    done
    end=$(date +%s.%N)
    ticks=$(awk '{print $14 + $15}' "/proc/$gw_pid/stat")
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$gw_pid/status")
    es_pid=$(pgrep -f "instances/${ES_PORT:-9200}/" | head -1 || true)
    anon_kib=0 file_kib=0
    read -r anon_kib file_kib <"$work/rss" 2>/dev/null || true
    secs=$(echo "$end - $start" | bc)
    echo "e2e: $n documents ($mb MB of CRI logs${JOURNAL_DIR:+ + journal entries from $JOURNAL_DIR}) searchable in ${secs} s = $(echo "$n / $secs" | bc) docs/s," \
      "$(echo "$mb / $secs" | bc -l | cut -c1-5) MB/s; gateway CPU $(echo "$ticks / 100" | bc -l | cut -c1-5) s," \
      "peak RSS $((hwm / 1024)) MiB (sampled peaks: RssAnon $((anon_kib / 1024)) MiB, RssFile $((file_kib / 1024)) MiB)"
    ;;
  *) echo "usage: $0 tail|e2e" >&2; exit 2 ;;
esac
