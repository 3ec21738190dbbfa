#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run):
#
#   scripts/test.sh
#
# 1. scripts/setup.sh                 system packages, rustfmt, clippy (no-op when present)
# 2. scripts/elasticsearch.sh start   a real Elasticsearch on 127.0.0.1:${ES_PORT:-9200}
# 3. cargo fmt --check
# 4. cargo clippy --all-targets -- -D warnings
# 5. cargo test --benches   (each benchmark once, as a smoke test; criterion does not
#                            take libtest's --test-threads)
# 6. scripts/kube-apiserver.sh build   etcd + kube-apiserver/kubectl v1.36.3 (cached; the
#                                     first build takes about an hour, later runs a second)
# 7. cargo test --lib --bins --tests -- --test-threads=2
#    (tests/kube_apiserver.rs runs a real kube-apiserver against the gateway; the
#    instances it starts live under one temporary directory and are stopped on exit)
#    with KLG_TEST_ES_URL=http://127.0.0.1:$ES_PORT for the integration tests
# 8. es-cluster: scripts/elasticsearch.sh cluster-start (three nodes on 127.0.0.1:
#    ${KLG_ES_CLUSTER_PORT:-9201}..+2, transport +100), then tests/es_cluster.rs with
#    KLG_TEST_ES_CLUSTER_URLS: one node killed with SIGKILL under load, every acknowledged
#    event stored exactly once through the other nodes; the cluster is stopped again
#    (the test is #[ignore]d, so step 7 reports it as ignored; this step runs --ignored)
# 8b. server matrix: on Elasticsearch 9.x, OpenSearch 2.x and OpenSearch 3.x (each from
#    scripts/elasticsearch.sh, ES_SERVER=es9|os2|os3, own port), the tests that touch the
#    server: templates and bulk outcomes, a kill -9 under load, the 30 s outage until the
#    spool is full, the flavour tests, data streams (written once across rollovers, a kill -9
#    while rolling over). KLG_MATRIX="es9 os2 os3" by default; KLG_MATRIX="" skips it (never in CI).
#    With os2 in it, also tests/os_security.rs (#[ignore]d in step 7): its own OpenSearch
#    2.19.4 with the security plugin (HTTPS, basic auth as a least-privilege user).
#    Prints the time of each server and of the whole step.
# 9. fuzz: each fuzz target for 10 s (scripts/fuzz.sh; the build is cached)
# 10. chart: the Helm chart against a real kube-apiserver (its own, in a temporary
#    directory): scripts/helm.sh check (helm lint --strict with the default, test and
#    cert-manager values; deploy/rendered/ up to date; helm template | kubectl apply
#    --dry-run=server --validate=strict, no warning), then helm install with the test
#    cluster's values, helm upgrade to another image tag (the StatefulSet and the
#    DaemonSet must carry it) and helm uninstall. helm (Go module helm.sh/helm/v4) is
#    built in the background from the start of step 6 on, beside the Go build there.
#    KLG_SKIP_CHART=1 skips it (never in CI).
# 11. pressure: the reliability tests again (rotation and kill -9 of the container
#    source, kill -9 of journald, journal files vacuumed under the reader, kill -9 of the
#    webhook, Elasticsearch outages) while
#    scripts/pressure.sh saturates every core and writes to disk. Exact counts must
#    hold there too. KLG_SKIP_PRESSURE=1 skips it (never in CI).
# 12. node: scripts/node-e2e.sh, end to end on a real node: containerd and a kubelet
#    registered with a kube-apiserver of its own, the project's image (release build)
#    imported, the chart installed (both roles), pods that print and rotate their logs,
#    kubelet's journal, every line and audit event exactly once, then helm upgrade to a
#    rebuilt image under traffic and the same checks. KLG_SKIP_NODE=1 skips it (never
#    in CI).
#
# An Elasticsearch (single node or cluster) that this script started is stopped again
# on exit, whatever happened; one that was already running (a developer's, left up on
# purpose) is left running. Exits non-zero as soon as a step fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export ES_PORT="${ES_PORT:-9200}"
export KLG_TEST_ES_URL="http://127.0.0.1:$ES_PORT"
# Every fault test appends its counts here (tests/common/reliability.rs); printed at the end.
export KLG_RELIABILITY_LOG="${KLG_RELIABILITY_LOG:-$(pwd)/target/reliability.ndjson}"
mkdir -p target
: >"$KLG_RELIABILITY_LOG"

current_step=""
step_start=$SECONDS
script_start=$SECONDS
step() {
  current_step="$*"
  step_start=$SECONDS
  printf '\n==> %s\n' "$current_step"
}

started_es=0
started_cluster=0
# The three-node cluster of the es-cluster step: its first HTTP port (see scripts/elasticsearch.sh).
cluster_port="${KLG_ES_CLUSTER_PORT:-9201}"
cluster_script() { ES_PORT="$cluster_port" ES_CLUSTER_NODES=3 bash scripts/elasticsearch.sh "$@"; }
# Every kube-apiserver + etcd the tests start lives in a directory under this one, so a
# test run that is interrupted (timeout, Ctrl-C) still has them stopped below.
KLG_KUBE_TEST_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/klg-kube-tests.XXXXXX")"
export KLG_KUBE_TEST_ROOT
stop_kube_instances() {
  local d
  for d in "$KLG_KUBE_TEST_ROOT"/*/kube; do
    [[ -d "$d" ]] || continue
    KUBE_DIR="$d" bash scripts/kube-apiserver.sh stop >/dev/null 2>&1 || true
  done
  rm -rf "$KLG_KUBE_TEST_ROOT"
}
finish() {
  local rc=$?
  trap - EXIT
  bash scripts/pressure.sh stop >/dev/null 2>&1 || true
  stop_kube_instances
  if ((started_cluster)); then
    printf '\n==> stop the Elasticsearch cluster this run started (ports %s-%s)\n' "$cluster_port" "$((cluster_port + 2))"
    cluster_script cluster-stop || true
  fi
  if ((started_es)); then
    printf '\n==> stop the Elasticsearch this run started (port %s)\n' "$ES_PORT"
    bash scripts/elasticsearch.sh stop || true
  fi
  if ((rc == 0)); then
    printf '\ntest.sh: all steps passed in %d s\n' "$((SECONDS - script_start))"
    if [[ -n "${passed:-}" ]]; then
      printf '\ntests: %s passed, %s failed\n' "$passed" "$failed"
    fi
  else
    printf '\ntest.sh: FAILED at "%s" (exit %d, after %d s in that step)\n' \
      "$current_step" "$rc" "$((SECONDS - step_start))" >&2
    printf 'test.sh: Elasticsearch log: ES_PORT=%s scripts/elasticsearch.sh logs\n' "$ES_PORT" >&2
  fi
  exit "$rc"
}
trap finish EXIT
# Make Ctrl-C / a CI timeout run the EXIT trap too, so no Elasticsearch is left behind.
trap 'exit 130' INT
trap 'exit 143' TERM

step "setup: scripts/setup.sh"
bash scripts/setup.sh
# rustup's cargo lives in ~/.cargo/bin, which a non-login shell may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

step "elasticsearch: scripts/elasticsearch.sh start (port $ES_PORT)"
if ! bash scripts/elasticsearch.sh status >/dev/null 2>&1; then
  # Set before starting, so a start that fails half-way is cleaned up as well.
  started_es=1
  # A server this script starts starts empty: the integ-test Elasticsearch has no data
  # stream API, so the streams the tests make cannot be deleted, and an instance kept in
  # the cache between runs would collect them (and their shards) run after run.
  bash scripts/elasticsearch.sh wipe >/dev/null
fi
bash scripts/elasticsearch.sh start

step "format: cargo fmt --check"
cargo fmt --all -- --check

step "lint: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "benches, once each: cargo test --benches"
cargo test --benches

step "kube-apiserver: scripts/kube-apiserver.sh build (etcd + kube-apiserver/kubectl, cached)"
# The chart step's helm build does not depend on the kube-apiserver build or on the
# tests: it starts now, in the background, at low priority (cached after the first run).
helm_build_log="$(pwd)/target/helm-build.log"
if [[ "${KLG_SKIP_CHART:-0}" != 1 ]]; then
  nice -n 10 bash scripts/helm.sh build >"$helm_build_log" 2>&1 &
  helm_build_pid=$!
fi
bash scripts/kube-apiserver.sh build

step "test: cargo test --lib --bins --tests -- --test-threads=2 (KLG_TEST_ES_URL=$KLG_TEST_ES_URL)"
test_log="$(mktemp)"
cargo test --no-fail-fast --lib --bins --tests -- --test-threads=2 2>&1 | tee "$test_log"

step "es-cluster: three nodes, kill one mid-load (ports $cluster_port-$((cluster_port + 2)))"
if ! cluster_script cluster-status >/dev/null 2>&1; then
  started_cluster=1
fi
cluster_script cluster-start
KLG_TEST_ES_CLUSTER_URLS="$(printf 'http://127.0.0.1:%s,' "$cluster_port" "$((cluster_port + 1))" "$((cluster_port + 2))")"
# The test is #[ignore]d (step 7 reports it as ignored, not passed): --ignored runs it here.
KLG_TEST_ES_CLUSTER_URLS="${KLG_TEST_ES_CLUSTER_URLS%,}" \
  cargo test --no-fail-fast --test es_cluster -- --ignored --nocapture 2>&1 | tee -a "$test_log"
# Not needed by the steps below: give its memory and CPU back.
if ((started_cluster)); then
  cluster_script cluster-stop
  started_cluster=0
fi
printf 'es-cluster step: %d s\n' "$((SECONDS - step_start))"

step "server matrix: the server-touching tests on ${KLG_MATRIX-es9 os2 os3}"
# Each server runs alone (stopped before the next starts), on its own port: the
# suite's Elasticsearch 8.19 keeps running for the steps below.
matrix_start=$SECONDS
matrix_server=""
# scripts/elasticsearch.sh for one server of the matrix, on that server's own port:
# ES_PORT, exported above for the suite's Elasticsearch, would point every server of
# the matrix at the suite's instance (and stop it).
matrix_es() {
  local server="$1"
  shift
  env -u ES_PORT ES_SERVER="$server" bash scripts/elasticsearch.sh "$@"
}
stop_matrix_server() {
  [[ -n "$matrix_server" ]] || return 0
  matrix_es "$matrix_server" stop || true
  matrix_server=""
}
# On a failure here, stop this step's server too, then report as every step does
# (finish reads the exit status from $?, so it is handed on).
status_was() { return "$1"; }
trap 'matrix_rc=$?; set +e; stop_matrix_server; status_was "$matrix_rc"; finish' EXIT
for server in ${KLG_MATRIX-es9 os2 os3}; do
  server_start=$SECONDS
  matrix_server="$server"
  # Empty, as the suite's server above, unless it was already running.
  matrix_es "$server" status >/dev/null 2>&1 || matrix_es "$server" wipe >/dev/null
  ES_START_TIMEOUT=300 matrix_es "$server" start
  server_url="$(matrix_es "$server" status | sed -n 's/^running on \([^ ]*\) .*/\1/p')"
  [[ "$server_url" == http://127.0.0.1:* && "$server_url" != "$KLG_TEST_ES_URL" ]] ||
    { echo "server matrix: $server is not running on a port of its own (status: $server_url)" >&2; exit 1; }
  # Test names are filters. The 429 of a request over the indexing-pressure limit
  # (too_large) is Elasticsearch's: OpenSearch has its own shard indexing pressure.
  filters=(flavour closed_index write_block kill_9 breaks_the_mapping elasticsearch_stopped_for_30s data_stream rollover)
  [[ "$server" == es* ]] && filters+=(too_large)
  # ES_SERVER is inherited by the tests' private instances (the outage test); the
  # kill -9 runs with 20,000 events (100,000 on the main version).
  ES_SERVER="$server" KLG_TEST_ES_URL="$server_url" KLG_TEST_SERVER="$server" KLG_FAULT_EVENTS=20000 \
    cargo test --no-fail-fast --test flavours --test sink_es_faults --test delivery_faults --test data_streams \
    -- --test-threads=1 "${filters[@]}" 2>&1 | tee -a "$test_log"
  stop_matrix_server
  printf 'server matrix: %s in %d s\n' "$server" "$((SECONDS - server_start))"
done
# Security on OpenSearch: tests/os_security.rs starts (and wipes) its own OpenSearch
# with the security plugin, ES_SERVER=os2 ES_SECURE=1, on a private port. #[ignore]d in
# the test step, so that it runs once, here, with no other server of the matrix up.
if [[ " ${KLG_MATRIX-es9 os2 os3} " == *" os2 "* ]]; then
  server_start=$SECONDS
  cargo test --no-fail-fast --test os_security -- --ignored 2>&1 | tee -a "$test_log"
  printf 'server matrix: os2 secured (tests/os_security.rs) in %d s\n' "$((SECONDS - server_start))"
fi
trap finish EXIT
printf 'server matrix step: %d s\n' "$((SECONDS - matrix_start))"

step "fuzz: every parser of untrusted bytes for 10 s each (scripts/fuzz.sh 10)"
# The fuzz build (sanitizer coverage, its own workspace) is cached beside the
# Elasticsearch zip: cargo rebuilds only what changed, so only a new machine pays
# for the whole build.
fuzz_cache="${KLG_CACHE_DIR:-$([[ $EUID -eq 0 ]] && echo /var/cache/kube-log-gateway || echo "$HOME/.cache/kube-log-gateway")}/fuzz-target"
FUZZ_TARGET_DIR="$fuzz_cache" bash scripts/fuzz.sh 10

if [[ "${KLG_SKIP_CHART:-0}" != 1 ]]; then
  step "chart: scripts/helm.sh check, install, upgrade, uninstall against a real kube-apiserver"
  if ! wait "$helm_build_pid"; then
    tail -n 40 "$helm_build_log"
    echo "chart step: building helm failed (log: $helm_build_log)" >&2
    exit 1
  fi
  chart_kube="$KLG_KUBE_TEST_ROOT/chart/kube"
  KUBE_DIR="$chart_kube" bash scripts/kube-apiserver.sh start >/dev/null
  (
    set -euo pipefail
    # shellcheck disable=SC1090
    source <(KUBE_DIR="$chart_kube" bash scripts/kube-apiserver.sh env)
    export KUBECTL KUBECONFIG
    bash scripts/helm.sh check 2>&1 | grep -v 'found symbolic link'
    "$KUBECTL" create namespace klg-chart >/dev/null
    helm() { bash scripts/helm.sh -- "$@" 2>&1 | grep -v 'found symbolic link'; }
    helm install klg charts/kube-log-gateway -n klg-chart -f scripts/kube-node/test-values.yaml | sed -n '1,4p'
    helm upgrade klg charts/kube-log-gateway -n klg-chart -f scripts/kube-node/test-values.yaml --set image.tag=dev2 | sed -n '1,4p'
    for kind in statefulset/klg-kube-log-gateway daemonset/klg-kube-log-gateway-node; do
      image="$("$KUBECTL" -n klg-chart get "$kind" -o jsonpath='{.spec.template.spec.containers[0].image}')"
      [[ "$image" == klg.local/kube-log-gateway:dev2 ]] || { echo "chart step: $kind runs $image after helm upgrade" >&2; exit 1; }
    done
    helm uninstall klg -n klg-chart --wait | sed -n '1,2p'
  )
  KUBE_DIR="$chart_kube" bash scripts/kube-apiserver.sh stop >/dev/null
  printf 'chart step: %d s\n' "$((SECONDS - step_start))"
fi

if [[ "${KLG_SKIP_PRESSURE:-0}" != 1 ]]; then
  step "pressure: the reliability tests again with every core saturated (scripts/pressure.sh)"
  # Built above; build again (a no-op) before the hogs start so that only the tests run under them.
  cargo test --no-run --test containers --test journald --test delivery_faults 2>&1 | tail -1
  pressure_start=$SECONDS
  bash scripts/pressure.sh start
  export KLG_PRESSURE=1
  # Test names are filters: each matches the reliability tests of one or more binaries.
  cargo test --no-fail-fast --test containers --test journald --test delivery_faults -- --test-threads=1 \
    rotated_five_times kill_9 elasticsearch_down_while_files_rotate elasticsearch_stopped_for_30s \
    journal_vacuumed_while_elasticsearch_is_down \
    2>&1 | tee -a "$test_log"
  bash scripts/pressure.sh stop
  unset KLG_PRESSURE
  printf 'pressure step: %d s\n' "$((SECONDS - pressure_start))"
fi

if [[ "${KLG_SKIP_NODE:-0}" != 1 ]]; then
  step "node: scripts/node-e2e.sh (kubelet and containerd run the project's image, installed with the chart)"
  # Last: it builds the release binary for the image and, on a new machine, the
  # control plane's other daemons (both cached after the first run).
  node_start=$SECONDS
  bash scripts/node-e2e.sh
  printf 'node step: %d s\n' "$((SECONDS - node_start))"
fi

# The reliability table: fault → sent → acknowledged → stored → set aside → lost → duplicated.
if [[ -s "$KLG_RELIABILITY_LOG" ]]; then
  printf '\n==> reliability (load average %s)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  python3 - "$KLG_RELIABILITY_LOG" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| fault | CPU saturated | sent | acknowledged | stored | set aside (counted) | lost | duplicated |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['fault']} | {'yes' if r['pressure'] else 'no'} | {r['sent']:,} | {r['acknowledged']:,} | {r['stored']:,} | {r['set_aside']:,} | {r['lost']:,} | {r['duplicated']:,} |")
PY
fi

# One total over every test binary, as the last line: "tests: N passed, M failed".
totals=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) {if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i}} END {printf "%d %d", p, f}' "$test_log")
rm -f "$test_log"
passed=${totals% *}
failed=${totals#* }
