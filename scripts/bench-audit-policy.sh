#!/usr/bin/env bash
# What the shipped audit policy costs in audit events, against the policy shipped
# before it served detection, on the same busy-cluster API traffic:
#
#   scripts/bench-audit-policy.sh [SECONDS]     (default 60 per policy)
#
# For each policy, a kube-apiserver of its own (scripts/kube-apiserver.sh, in a
# temporary directory) takes scripts/bench-audit-policy/workload.py for SECONDS;
# its --audit-log-path is the count: events, bytes, events per request and per
# second. The two runs go one after the other on the same machine; the figures to
# compare are per request, since the request rate of two runs differs a little.
# Prints a Markdown table for docs/benchmarks.md, with the load average.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
work="$(mktemp -d)"
trap 'for d in "$work"/*/; do KUBE_DIR="$d" bash scripts/kube-apiserver.sh stop >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT

run() { # name policy
  local dir="$work/$1"
  KUBE_DIR="$dir" KLG_AUDIT_POLICY="$2" bash scripts/kube-apiserver.sh start >/dev/null
  # shellcheck disable=SC1090
  (source <(KUBE_DIR="$dir" bash scripts/kube-apiserver.sh env)
    export KUBE_URL KUBE_CA KUBE_ADMIN_TOKEN
    lines_before=$(wc -l <"$AUDIT_LOG")
    bytes_before=$(wc -c <"$AUDIT_LOG")
    started=$(date +%s.%N)
    counts=$(python3 scripts/bench-audit-policy/workload.py "$seconds")
    ended=$(date +%s.%N)
    # The webhook batches; the log backend writes at once, but give it a moment to flush.
    sleep 2
    python3 - "$1" "$AUDIT_LOG" "$lines_before" "$bytes_before" "$started" "$ended" "$counts" <<'PY'
import json, sys
name, log, lines_before, bytes_before, started, ended, counts = sys.argv[1:]
counts = json.loads(counts)
with open(log, "rb") as f:
    data = f.read()[int(bytes_before):]
events = data.count(b"\n")
levels = {}
for line in data.splitlines():
    level = json.loads(line).get("level", "?")
    levels[level] = levels.get(level, 0) + 1
elapsed = float(ended) - float(started)
print(json.dumps({"policy": name, "requests": counts["total"], "seconds": elapsed,
                  "events": events, "bytes": len(data), "levels": levels}))
PY
  )
  KUBE_DIR="$dir" bash scripts/kube-apiserver.sh stop >/dev/null
}

previous=$(run previous scripts/bench-audit-policy/previous-policy.yaml)
shipped=$(run shipped deploy/kube-apiserver/audit-policy.yaml)
python3 - "$previous" "$shipped" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:3]]
load = sys.argv[3]
print(f"2 cores, 24 GiB; load average {load}")
print("| policy | API requests/s | audit events/s | events per 1,000 requests | bytes per request | levels |")
print("|---|---|---|---|---|---|")
for r in rows:
    rps = r["requests"] / r["seconds"]
    eps = r["events"] / r["seconds"]
    levels = ", ".join(f"{k} {v:,}" for k, v in sorted(r["levels"].items()))
    print(f"| {r['policy']} | {rps:,.0f} | {eps:,.0f} | {1000 * r['events'] / r['requests']:,.0f} | "
          f"{r['bytes'] / r['requests']:,.0f} | {levels} |")
p, s = rows
per_req = lambda r, k: r[k] / r["requests"]
print(f"\nshipped against previous, per request: events {per_req(s, 'events') / per_req(p, 'events') - 1:+.1%}, "
      f"bytes {per_req(s, 'bytes') / per_req(p, 'bytes') - 1:+.1%}")
PY
