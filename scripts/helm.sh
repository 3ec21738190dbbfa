#!/usr/bin/env bash
# Helm for the chart's checks and for installing it into the test cluster.
#
#   scripts/helm.sh build          build helm once from the Go module helm.sh/helm/v4
#                                  (cached; rebuilt only when the pin changes) and print
#                                  its path
#   scripts/helm.sh path           print the binary's path; exit 3 if not built
#   scripts/helm.sh render [--check]
#                                  write what the chart renders with its default values
#                                  (release and namespace kube-log-gateway, the Namespace
#                                  object included) into deploy/rendered/; --check only
#                                  compares and exits 1 when deploy/rendered/ is stale
#   scripts/helm.sh check          helm lint --strict with the default values, the test
#                                  cluster's values and cert-manager on; render --check;
#                                  and, when KUBECTL and KUBECONFIG name a running
#                                  kube-apiserver, helm template (default values) |
#                                  kubectl apply --dry-run=server --validate=strict in a
#                                  fresh namespace, failing on any warning
#   scripts/helm.sh -- ARGS...     run helm with ARGS (building it first if needed)
#
# Environment:
#   HELM_VERSION    the pin (default below)
#   KLG_CACHE_DIR   as for scripts/elasticsearch.sh: /var/cache/kube-log-gateway as root,
#                   else ~/.cache/kube-log-gateway
#
# The binary lives in $CACHE_DIR/helm/<version>/helm. helm.sh/helm/v4 has no `replace`
# lines, so a plain `go install module@version` builds it (about 2-5 minutes on two
# cores the first time; go.sum checks go through the Go checksum database as usual).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
GO_MIN_MINOR=26 # helm.sh/helm/v4 v4.3 needs Go 1.26

if [[ $EUID -eq 0 ]]; then
  CACHE_DIR="${KLG_CACHE_DIR:-/var/cache/kube-log-gateway}"
else
  CACHE_DIR="${KLG_CACHE_DIR:-$HOME/.cache/kube-log-gateway}"
fi
BIN_DIR="$CACHE_DIR/helm/$HELM_VERSION"
HELM="$BIN_DIR/helm"

log() { printf 'helm: %s\n' "$*" >&2; }
die() { printf 'helm: ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$HELM_VERSION" =~ ^v4\.[0-9]+\.[0-9]+$ ]] || die "HELM_VERSION must look like v4.3.2 (got '$HELM_VERSION')"

find_go() {
  local g v
  for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [[ -n "$g" && -x "$g" ]] || continue
    v="$("$g" env GOVERSION 2>/dev/null || true)"
    if [[ "$v" =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= GO_MIN_MINOR)); then
      echo "$g"
      return 0
    fi
  done
  die "no Go 1.$GO_MIN_MINOR or newer found (helm $HELM_VERSION needs it)"
}

built() { [[ -x "$HELM" ]] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -qxF "$HELM_VERSION"; }

do_build() {
  built && return 0
  local go t0=$SECONDS tmp blog="$BIN_DIR/build.log"
  go="$(find_go)"
  mkdir -p "$BIN_DIR"
  tmp="$(mktemp -d "$BIN_DIR/.tmp.XXXXXX")"
  log "building helm $HELM_VERSION from the Go module helm.sh/helm/v4 (once; log: $blog)"
  # The version as helm's Makefile stamps it, so `helm version` and the chart's
  # kubeVersion checks see a real release.
  if ! GOBIN="$tmp" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" \
    nice -n 19 "$go" install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >"$blog" 2>&1; then
    tail -n 40 "$blog" >&2
    rm -rf "$tmp"
    die "go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION failed (log: $blog)"
  fi
  mv "$tmp/helm" "$HELM"
  rm -rf "$tmp"
  built || die "built helm reports '$("$HELM" version --template '{{.Version}}' 2>&1)', not $HELM_VERSION"
  log "built in $((SECONDS - t0)) s: $HELM"
}

with_build_lock() {
  local fd
  mkdir -p "$CACHE_DIR/helm"
  exec {fd}>"$CACHE_DIR/helm/.build.lock"
  flock -w 1800 "$fd" || die "timed out waiting for $CACHE_DIR/helm/.build.lock"
  do_build
  exec {fd}>&-
}

# deploy/rendered/ is the chart's output, never edited by hand: one source of truth.
do_render() {
  local check="${1:-}" repo out tmp
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  out="$repo/deploy/rendered"
  tmp="$(mktemp -d)"
  "$HELM" template kube-log-gateway "$repo/charts/kube-log-gateway" --namespace kube-log-gateway \
    --set createNamespace=true --output-dir "$tmp" >/dev/null
  if [[ "$check" == --check ]]; then
    if ! diff -ru "$out" "$tmp" >&2; then
      rm -rf "$tmp"
      die "deploy/rendered/ differs from what charts/kube-log-gateway renders: run scripts/helm.sh render"
    fi
    log "deploy/rendered/ matches the chart"
  else
    rm -rf "$out"
    mv "$tmp" "$out"
    tmp=
    log "wrote $out"
  fi
  [[ -z "$tmp" ]] || rm -rf "$tmp"
}

do_check() {
  local repo chart ns out
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  chart="$repo/charts/kube-log-gateway"
  "$HELM" lint --strict "$chart"
  "$HELM" lint --strict "$chart" -f "$repo/scripts/kube-node/test-values.yaml"
  "$HELM" lint --strict "$chart" --set gateway.tls.certManager.enabled=true
  do_render --check
  [[ -n "${KUBECTL:-}" && -n "${KUBECONFIG:-}" ]] || { log "KUBECTL/KUBECONFIG not set: no server-side dry run"; return 0; }
  ns="klg-dry-run-$$"
  "$KUBECTL" create namespace "$ns" >/dev/null
  out="$("$HELM" template klg "$chart" --namespace "$ns" 2>/dev/null |
    "$KUBECTL" apply --dry-run=server --validate=strict -f - 2>&1)" || {
    "$KUBECTL" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    printf '%s\n' "$out" >&2
    die "kube-apiserver refused the chart's default rendering"
  }
  "$KUBECTL" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  printf '%s\n' "$out"
  ! grep -qi warning <<<"$out" || die "kube-apiserver warned about the chart's default rendering"
  log "kube-apiserver accepted all $(grep -c . <<<"$out") objects of the default rendering (--dry-run=server --validate=strict)"
}

case "${1:-}" in
  check)
    with_build_lock
    do_check
    ;;
  render)
    with_build_lock
    do_render "${2:-}"
    ;;
  build) with_build_lock && echo "$HELM" ;;
  path) echo "$HELM"; built || exit 3 ;;
  --)
    shift
    with_build_lock
    exec "$HELM" "$@"
    ;;
  *)
    echo "usage: $0 build|path|render [--check]|check|-- helm-args..." >&2
    exit 2
    ;;
esac
