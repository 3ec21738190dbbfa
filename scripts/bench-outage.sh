#!/usr/bin/env bash
# What an Elasticsearch outage looks like from the gateway, as a picture:
#
#   scripts/bench-outage.sh [--rate EVENTS_PER_S] [--outage SECONDS] [--out docs/img/outage.png]
#
# (The same sampler draws the end-to-end run: PLOT=docs/img/e2e.png scripts/bench-webhook.sh e2e ...)
#
# Starts a private Elasticsearch (ES_PORT, default 9250, so a developer's 9200 is not
# touched), the release gateway with mTLS and a spool, and loadgen at a steady rate for
# 20 s + the outage + 40 s. Twenty seconds in, Elasticsearch is stopped for --outage
# seconds (default 30), then started again. The gateway's /metrics are sampled every
# second (scripts/metrics-plot.py) and drawn: accepted/s keeps going, the spool fills
# and drains, retries climb, indexed/s stops and catches up. At the end it counts:
# acknowledged, stored, lost (acknowledged but not stored), duplicated (stored more
# than acknowledged) — nothing may be lost or duplicated.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rate=2000
outage=30
out=docs/img/outage.png
while (($#)); do
  case "$1" in
    --rate) rate="$2"; shift 2 ;;
    --outage) outage="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--rate N] [--outage SECONDS] [--out FILE.png]" >&2; exit 2 ;;
  esac
done

export ES_PORT="${ES_PORT:-9250}"
es_url="http://127.0.0.1:$ES_PORT"
work="$(mktemp -d /tmp/klg-outage.XXXXXX)"
cleanup() {
  [[ -n "${sampler:-}" ]] && kill "$sampler" 2>/dev/null || true
  [[ -n "${gw_pid:-}" ]] && kill "$gw_pid" 2>/dev/null || true
  bash scripts/elasticsearch.sh stop >/dev/null 2>&1 || true
  [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

venv="${KLG_CACHE_DIR:-/var/cache/kube-log-gateway}/venv-plot"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet matplotlib
fi

cargo build --release --quiet --bin kube-log-gateway --bin loadgen
bin=target/release
"$bin/kube-log-gateway" certs --out "$work/certs" >/dev/null
bash scripts/elasticsearch.sh start >/dev/null
prefix="outage$(date +%s)"
admin="127.0.0.1:${BENCH_ADMIN_PORT:-29465}"
cat >"$work/gateway.yaml" <<YAML
cluster_name: bench
data_dir: $work/data
server:
  listen: 127.0.0.1:${BENCH_PORT:-28444}
  tls:
    cert_file: $work/certs/server.crt
    key_file: $work/certs/server.key
    client_ca_file: $work/certs/ca.crt
admin:
  listen: $admin
log:
  level: warn
elasticsearch:
  urls: ["$es_url"]
  indices:
    audit: "$prefix-audit-%Y.%m.%d"
    dead_letter: "$prefix-deadletter-%Y.%m.%d"
  template:
    number_of_replicas: 0
  retry:
    max_backoff: 5s
YAML
"$bin/kube-log-gateway" serve --config "$work/gateway.yaml" 2>"$work/gateway.log" &
gw_pid=$!
for _ in $(seq 100); do curl -sf "http://$admin/healthz" >/dev/null && break; sleep 0.1; done

es_pid() { cat "${KLG_CACHE_DIR:-/var/cache/kube-log-gateway}/instances/$ES_PORT/es.pid" 2>/dev/null || echo 0; }
"$venv/bin/python" scripts/metrics-plot.py sample --admin "http://$admin" --out "$work/samples.csv" --es-pid "$(es_pid)" &
sampler=$!
t0=$SECONDS
duration=$((20 + outage + 40))
"$bin/loadgen" --url "https://127.0.0.1:${BENCH_PORT:-28444}/audit" --ca "$work/certs/ca.crt" \
  --cert "$work/certs/client.crt" --key "$work/certs/client.key" --run-id "$prefix" \
  --connections 2 --batch-size 100 --request-response-every 0 --rate "$rate" --duration "$duration" \
  >"$work/loadgen.out" &
lg=$!
sleep 20
down_at=$((SECONDS - t0))
bash scripts/elasticsearch.sh stop >/dev/null
echo "elasticsearch stopped at ${down_at} s"
sleep "$outage"
bash scripts/elasticsearch.sh start >/dev/null
up_at=$((SECONDS - t0))
echo "elasticsearch back at ${up_at} s"
wait "$lg"
cat "$work/loadgen.out"
acknowledged=$(awk '/^accepted events:/ {print $3}' "$work/loadgen.out")
index="$prefix-audit-*"
while :; do
  curl -s -XPOST "$es_url/$index/_refresh" >/dev/null
  stored=$(curl -s "$es_url/$index/_count" | sed -E 's/.*"count":([0-9]+).*/\1/')
  [[ "$stored" -ge "$acknowledged" ]] && break
  sleep 1
done
sleep 3
kill "$sampler"; wait "$sampler" 2>/dev/null || true
sampler=""
"$venv/bin/python" scripts/metrics-plot.py plot "$work/samples.csv" --out "$out" --shade "$down_at:$up_at" \
  --title "Elasticsearch stopped for ${outage} s under ${rate} audit events/s (2 cores, 24 GiB; load $(cut -d' ' -f1-3 /proc/loadavg))"
# Every _id is derived from the event, so stored == acknowledged means each exactly once.
echo "acknowledged: $acknowledged  stored: $stored  lost: $((acknowledged > stored ? acknowledged - stored : 0))  duplicated: $((stored > acknowledged ? stored - acknowledged : 0))"
curl -s -XDELETE "$es_url/$prefix-*" >/dev/null
