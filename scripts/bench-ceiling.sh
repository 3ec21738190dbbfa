#!/usr/bin/env bash
# The gateway against a plain bulk load of the very documents it produced (the ceiling).
#
#   scripts/bench-ceiling.sh audit [EVENTS]      # audit webhook end to end via loadgen (default 200000)
#   scripts/bench-ceiling.sh containers [MB]     # container logs end to end (default 100 MB of CRI logs)
#   scripts/bench-ceiling.sh journald [ENTRIES]  # journal files end to end, node role with the journald
#                                                # source only (default 1000000 entries, 80 % kubelet)
#   scripts/bench-ceiling.sh ab NDJSON A.json B.json [ROUNDS]
#                                                # the same documents bulk-loaded under two index
#                                                # templates, interleaved A B A B (default 2 rounds);
#                                                # LOAD_ARGS_A / LOAD_ARGS_B: extra `bulkload load`
#                                                # arguments per side (e.g. --batch-docs 400, --gzip 0);
#                                                # NDJSON_B: a second NDJSON for side B (the same
#                                                # documents with another _id or fewer fields)
#     NDJSON and A.json come from a run with KEEP=DIR (DIR/audit.ndjson, DIR/audit-template.json);
#     B.json is an edited copy of A.json (a setting, a mapping). The audit/containers mode deletes
#     the gateway's own template when it ends, so A and B are the only ones matching.
#
# audit/containers/journald: runs the release gateway end to end for the documents (like
# bench-webhook.sh e2e and bench-containers.sh e2e), stops it, exports what it
# wrote (index, _id, _source) to bulk NDJSON with `bulkload export`, deletes the
# indices (the gateway's template stays installed), then `bulkload load`s the NDJSON
# back with the gateway's default batching (2000 docs / 5 MiB, gzip fast, 4 in flight).
# ROUNDS (default 3) interleave the sides: gateway, ceiling, gateway, ceiling, ...
# Both sides are timed the same way: from the first document sent (the loader builds
# and gzips its bodies before that) until all are indexed (`_stats/indexing`, polled
# without a refresh once a second, every 50 ms in the last second) and searchable
# (`_refresh` + `_count`). Elasticsearch's CPU comes from
# `GET _nodes/stats/process` (process.cpu.total_in_millis), per 10,000 documents.
#
# journald: the journal comes from the journald bench's `generate` (systemd-journal-remote,
# files of 100,000 entries) into /tmp/klg-ceiling-jdata-ENTRIES, made once and reused; the
# gateway reads it from the head (`start_at: head`, a fresh data_dir every round). Beside each
# gateway round: its CPU seconds and its peak RSS split into RssAnon / RssFile (the largest of
# each seen in /proc/PID/status, sampled every 0.2 s). JOURNALD_YAML: extra lines for the
# `sources.journald` section (e.g. "    reopen_every: 10000"). ES_YAML: extra lines for the
# gateway's `elasticsearch` section, every source (e.g. "  concurrency: fixed").
#
# Environment: ES_PORT (default 9200; the test suite uses 9200, so prefer a port of your own),
# GW_BIN (gateway binary, default target/release/kube-log-gateway: lets two builds be compared),
# LOAD_PARALLEL (loader requests in flight, default 4), KEEP=DIR (keep the NDJSON and the
# installed template there, as input for `ab`), KEEP_WORK=1 (keep the work directory with the
# gateway's log).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-audit}"
shift || true
es="http://127.0.0.1:${ES_PORT:-9200}"
bin=target/release
gw_bin="${GW_BIN:-$bin/kube-log-gateway}"
work="$(mktemp -d /tmp/klg-ceiling.XXXXXX)"
gw_pid=""
prefix="ceil$(date +%s%N | cut -c1-13)"
trap '[[ -n "$gw_pid" ]] && { kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; }
      curl -s -XDELETE "$es/$prefix-*" >/dev/null || true; [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$work"' EXIT

cargo build --release --quiet --bin kube-log-gateway --bin loadgen --bin bulkload
ES_PORT="${ES_PORT:-9200}" bash scripts/elasticsearch.sh start >/dev/null

es_cpu_ms() {
  curl -s "$es/_nodes/_local/stats/process?filter_path=nodes.*.process.cpu.total_in_millis" |
    python3 -c 'import json,sys; print(next(iter(json.load(sys.stdin)["nodes"].values()))["process"]["cpu"]["total_in_millis"])'
}
count() {
  curl -s -XPOST "$es/$1/_refresh" >/dev/null || true
  local n
  n=$(curl -s "$es/$1/_count" | sed -E 's/.*"count":([0-9]+).*/\1/')
  [[ "$n" =~ ^[0-9]+$ ]] && echo "$n" || echo 0
}
# Documents indexed so far, on primaries: no refresh, so polling does not change what is measured.
indexed() { # INDEX
  local n
  n=$(curl -s "$es/$1/_stats/indexing?filter_path=_all.primaries.indexing.index_total" |
    sed -E 's/.*"index_total":([0-9]+).*/\1/')
  [[ "$n" =~ ^[0-9]+$ ]] && echo "$n" || echo 0
}
# Until N documents are indexed, then searchable. Both sides end the same way: the loader's
# side polls once after its last request, the gateway's side while it runs; so polls are
# cheap (no `_refresh`, which once a second had cost only the gateway's side segments and
# merges) and, within the last second of the load, every 50 ms (at one poll a second, the
# gateway's side ended up to a second late: up to 4 % of a 25 s round).
wait_for() { # INDEX N
  local got prev=0
  while got=$(indexed "$1"); ((got < $2)); do
    if ((got > prev && $2 - got <= got - prev)); then
      sleep 0.05 # less than the last second's worth to go
    else
      prev=$got
      sleep 1
    fi
  done
  while (($(count "$1") < $2)); do sleep 0.05; done
}
now() { date +%s.%N; }
# The largest RssAnon, RssFile and VmHWM (kB) of PID seen until killed, on one line of OUT,
# rewritten after every sample.
sample_rss() { # PID OUT
  local anon=0 file=0 hwm=0 a f h
  while [[ -r /proc/$1/status ]]; do
    read -r a f h < <(awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} /^VmHWM/ {h=$2} END {print a+0, f+0, h+0}' "/proc/$1/status")
    ((a > anon)) && anon=$a
    ((f > file)) && file=$f
    ((h > hwm)) && hwm=$h
    echo "$anon $file $hwm" >"$2"
    sleep 0.2
  done
}

# Bulk-loads NDJSON into fresh indices; prints "docs secs es_cpu_ms".
load_once() { # NDJSON INDEX_PATTERN N [BULKLOAD ARGS...]
  local file="$1" pat="$2" docs="$3"
  shift 3
  curl -s -XDELETE "$es/$pat" >/dev/null
  local c0 t0 t1 c1
  c0=$(es_cpu_ms); t0=$(now)
  "$bin/bulkload" load --url "$es" --file "$file" --parallel "${LOAD_PARALLEL:-4}" "$@" >"$work/load.out"
  wait_for "$pat" "$docs"
  t1=$(now); c1=$(es_cpu_ms)
  # From its first request: building and gzipping every body up front is the loader's
  # preparation, which the gateway's side does not have (it encodes while it sends).
  t0=$(awk '/^sending from:/ {print $3}' "$work/load.out")
  sed 's/^/  loader: /' "$work/load.out" >&2
  echo "  loader: Elasticsearch $(echo "scale=1; 100 * ($c1 - $c0) / 1000 / ($t1 - $t0) / $(nproc)" | bc) % of the $(nproc) cores" >&2
  echo "$docs $(echo "$t1 - $t0" | bc) $((c1 - c0))"
}

report() { # LABEL DOCS SECS CPU_MS
  printf '%-10s %9d docs  %8.1f s  %8.0f docs/s  ES CPU %6.2f s per 10k docs\n' \
    "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)" "$(echo "$4 / 1000 * 10000 / $2" | bc -l)"
}

if [[ "$mode" == ab ]]; then
  ndjson="$1" a="$2" b="$3" rounds="${4:-2}"
  n=$(($(wc -l <"$ndjson") / 2))
  if [[ -n "${NDJSON_B:-}" ]] && (($(wc -l <"$NDJSON_B") / 2 != n)); then
    echo "NDJSON_B has another number of documents than $ndjson" >&2
    exit 2
  fi
  index=$(head -1 "$ndjson" | sed -E 's/.*"_index":"([^"]+)".*/\1/')
  pattern="${index%-*}-*"
  for r in $(seq "$rounds"); do
    for side in A B; do
      [[ $side == A ]] && t="$a" || t="$b"
      [[ $side == A ]] && extra="${LOAD_ARGS_A:-}" || extra="${LOAD_ARGS_B:-}"
      [[ $side == A ]] && file="$ndjson" || file="${NDJSON_B:-$ndjson}"
      name=klg-ceiling-ab
      curl -s -XDELETE "$es/$pattern" >/dev/null
      curl -sf -XPUT "$es/_index_template/$name" -H 'content-type: application/json' --data-binary @"$t" >/dev/null
      # shellcheck disable=SC2086 # extra: loader arguments, split on purpose
      read -r d s c < <(load_once "$file" "$pattern" "$n" $extra)
      report "$side:$r" "$d" "$s" "$c"
      echo "          load: $(cut -d' ' -f1-3 /proc/loadavg)"
      curl -s -XDELETE "$es/_index_template/$name" >/dev/null
    done
  done
  curl -s -XDELETE "$es/$pattern" >/dev/null
  echo "load: $(cat /proc/loadavg)"
  exit 0
fi

# One gateway run end to end into fresh indices; prints "docs secs es_cpu_ms".
gateway_once() {
  curl -s -XDELETE "$es/$prefix-*" >/dev/null
  rm -rf "$work/data"
  local c0 t0 t1 c1 n
  case "$src" in
    audit)
      "$gw_bin" serve --config "$work/gateway.yaml" >/dev/null 2>"$work/gateway.log" &
      gw_pid=$!
      for _ in $(seq 100); do curl -sf "http://127.0.0.1:${BENCH_ADMIN_PORT:-29764}/healthz" >/dev/null && break; sleep 0.1; done
      c0=$(es_cpu_ms); t0=$(now)
      "$bin/loadgen" --url "https://127.0.0.1:${BENCH_PORT:-28743}/audit" --ca "$work/certs/ca.crt" \
        --cert "$work/certs/client.crt" --key "$work/certs/client.key" --run-id "$prefix" \
        --duration 100000 --batches $((events / 400)) >"$work/loadgen.out"
      n=$(awk '/^accepted events:/ {print $3}' "$work/loadgen.out")
      ;;
    containers | journald)
      n=$docs
      c0=$(es_cpu_ms); t0=$(now)
      "$gw_bin" serve --config "$work/gateway.yaml" >/dev/null 2>"$work/gateway.log" &
      gw_pid=$!
      ;;
  esac
  local sampler=""
  if [[ $src == journald ]]; then
    echo "0 0 0" >"$work/rss.out"
    sample_rss "$gw_pid" "$work/rss.out" &
    sampler=$!
  fi
  wait_for "$prefix-$src-*" "$n"
  t1=$(now); c1=$(es_cpu_ms)
  local ticks
  ticks=$(awk '{print $14 + $15}' "/proc/$gw_pid/stat")
  # On a machine where the gateway and Elasticsearch share the cores, what the gateway
  # uses is not available to Elasticsearch: the side-by-side figure for the fraction.
  echo "  gateway: CPU $(echo "scale=2; $ticks / $(getconf CLK_TCK)" | bc) s over $(echo "$t1 - $t0" | bc) s," \
    "$(echo "scale=1; 100 * $ticks / $(getconf CLK_TCK) / ($t1 - $t0) / $(nproc)" | bc) % of the $(nproc) cores;" \
    "Elasticsearch $(echo "scale=1; 100 * ($c1 - $c0) / 1000 / ($t1 - $t0) / $(nproc)" | bc) %" >&2
  if [[ -n $sampler ]]; then
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    read -r anon file hwm <"$work/rss.out"
    echo "  gateway: peak RSS (VmHWM) $((hwm / 1024)) MiB," \
      "peak RssAnon $((anon / 1024)) MiB, peak RssFile $((file / 1024)) MiB" >&2
  fi
  kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=""
  local dead
  dead=$(count "$prefix-deadletter-*")
  ((dead == 0)) || echo "warning: $dead dead letters" >&2
  echo "$n $(echo "$t1 - $t0" | bc) $((c1 - c0))"
}

src="$mode"
case "$mode" in
  audit)
    events="${1:-200000}"
    "$gw_bin" certs --out "$work/certs" >/dev/null
    cat >"$work/gateway.yaml" <<YAML
cluster_name: bench
data_dir: $work/data
server:
  listen: 127.0.0.1:${BENCH_PORT:-28743}
  tls:
    cert_file: $work/certs/server.crt
    key_file: $work/certs/server.key
    client_ca_file: $work/certs/ca.crt
admin:
  listen: 127.0.0.1:${BENCH_ADMIN_PORT:-29764}
log:
  level: warn
spool:
  max_bytes: 34359738368
elasticsearch:
  urls: ["$es"]
  indices:
    audit: "$prefix-audit-%Y.%m.%d"
    dead_letter: "$prefix-deadletter-%Y.%m.%d"
  template:
    number_of_replicas: 0
${ES_YAML:-}
YAML
    ;;
  containers)
    mb="${1:-100}"
    data=/tmp/klg-ceiling-ctr-data
    cargo bench --bench containers_tail --no-run --quiet
    bench="$(ls -t target/release/deps/containers_tail-* | grep -v '\.d$' | head -1)"
    docs=$("$bench" --bench --mb "$mb" --dir "$data" | sed -E 's/.* lines\/s, ([0-9]+) documents.*/\1/')
    cat >"$work/gateway.yaml" <<YAML
cluster_name: bench
data_dir: $work/data
admin:
  listen: 127.0.0.1:${BENCH_ADMIN_PORT:-29765}
log:
  level: warn
sources:
  containers:
    paths: ["$data/*.log"]
elasticsearch:
  urls: ["$es"]
  indices:
    containers: "$prefix-containers-%Y.%m.%d"
    dead_letter: "$prefix-deadletter-%Y.%m.%d"
  template:
    number_of_replicas: 0
${ES_YAML:-}
YAML
    ;;
  journald)
    entries="${1:-1000000}"
    data=/tmp/klg-ceiling-jdata-$entries
    cargo bench --bench journald --no-run --quiet
    bench="$(ls -t target/release/deps/journald-* | grep -v '\.d$' | head -1)"
    [[ -d $data ]] || "$bench" generate "$data" "$entries" >&2
    docs=$(python3 -c "print(sum(1 for i in range($entries) if i % 5 != 4))") # kubelet.service's
    cat >"$work/gateway.yaml" <<YAML
cluster_name: bench
data_dir: $work/data
admin:
  listen: 127.0.0.1:${BENCH_ADMIN_PORT:-29766}
log:
  level: warn
sources:
  journald:
    directories: ["$data"]
    units: [kubelet.service]
    start_at: head
${JOURNALD_YAML:-}
elasticsearch:
  urls: ["$es"]
  indices:
    kubelet: "$prefix-journald-%Y.%m.%d"
    dead_letter: "$prefix-deadletter-%Y.%m.%d"
  template:
    number_of_replicas: 0
${ES_YAML:-}
YAML
    ;;
  *) echo "usage: $0 audit [EVENTS] | containers [MB] | journald [ENTRIES] | ab NDJSON A.json B.json [ROUNDS]" >&2; exit 2 ;;
esac

# Rounds interleave the two sides (gateway, ceiling, gateway, ceiling, ...): the machine is
# shared, and only figures from the same stretch of time compare. The first gateway run's
# documents are exported once and are what every ceiling round loads.
pattern="$prefix-$src-*"
tmpl="kube-log-gateway-$prefix-$src"
echo "== $src, ${LOAD_PARALLEL:-4} loader requests in flight, ${ROUNDS:-3} rounds"
for r in $(seq "${ROUNDS:-3}"); do
  gateway_once >"$work/gateway.out" # not in a subshell: the EXIT trap must know gw_pid
  read -r n gs gc <"$work/gateway.out"
  report "gateway:$r" "$n" "$gs" "$gc"
  if [[ $r == 1 ]]; then
    "$bin/bulkload" export --url "$es" --index "$pattern" --out "$work/docs.ndjson" >&2
    curl -s "$es/_index_template/$tmpl" |
      python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["index_templates"][0]["index_template"]))' >"$work/template.json"
  fi
  read -r ld ls lc < <(load_once "$work/docs.ndjson" "$pattern" "$n")
  report "ceiling:$r" "$ld" "$ls" "$lc"
  echo "fraction of the ceiling, round $r: $(echo "scale=3; ($n / $gs) / ($ld / $ls)" | bc)"
done
echo "load: $(cat /proc/loadavg)"
if [[ -n "${KEEP:-}" ]]; then
  mkdir -p "$KEEP"
  cp "$work/docs.ndjson" "$KEEP/$src.ndjson"
  cp "$work/template.json" "$KEEP/$src-template.json"
  echo "kept $KEEP/$src.ndjson and $KEEP/$src-template.json"
fi
curl -s -XDELETE "$es/_index_template/$tmpl" >/dev/null
