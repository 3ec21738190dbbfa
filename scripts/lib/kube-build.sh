# Sourced by scripts/kube-apiserver.sh and scripts/kube-node.sh: building Kubernetes
# commands from the Go module k8s.io/kubernetes the same way for both (Go version,
# link flags, build flags). Uses the pins and paths those scripts set (KUBE_VERSION,
# WRAPPER_DIR, BIN_DIR) and their log, die and show_log_tail helpers.
# shellcheck shell=bash

GO_MIN_MINOR=26 # k8s.io/kubernetes v1.36 needs Go 1.26
KUBE_MINOR="${KUBE_MINOR:-$(cut -d. -f2 <<<"$KUBE_VERSION")}"

find_go() {
  local g
  for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [[ -n "$g" && -x "$g" ]] || continue
    local v
    v="$("$g" env GOVERSION 2>/dev/null || true)"
    if [[ "$v" =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= GO_MIN_MINOR)); then
      echo "$g"
      return 0
    fi
  done
  die "no Go 1.$GO_MIN_MINOR or newer found (k8s.io/kubernetes $KUBE_VERSION needs it); install Go 1.$GO_MIN_MINOR+ (e.g. /usr/local/go) or put it on PATH"
}

# The version as Kubernetes' own build stamps it (hack/lib/version.sh): into
# component-base (--version, /version) and client-go (kubectl's User-Agent and version).
ldflags() {
  local p
  printf '%s ' -s -w
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf '%s ' "-X $p.gitVersion=$KUBE_VERSION" "-X $p.gitMajor=1" "-X $p.gitMinor=$KUBE_MINOR" \
      "-X $p.gitTreeState=clean" "-X $p.gitCommit=unknown" "-X $p.buildDate=1970-01-01T00:00:00Z"
  done
}

build_stamp() {
  { echo "$KUBE_VERSION"; ldflags; echo; cat "$WRAPPER_DIR/go.mod" "$WRAPPER_DIR/go.sum"; } | sha256sum | cut -d' ' -f1
}

check_wrapper() {
  [[ -f "$WRAPPER_DIR/go.mod" && -f "$WRAPPER_DIR/go.sum" ]] || die "wrapper module missing: $WRAPPER_DIR/go.mod, go.sum"
  grep -qE "^require k8s\.io/kubernetes $KUBE_VERSION\$" "$WRAPPER_DIR/go.mod" ||
    die "$WRAPPER_DIR/go.mod does not require k8s.io/kubernetes $KUBE_VERSION: update it with the pin (see its header)"
  if grep -E '=> k8s\.io/' "$WRAPPER_DIR/go.mod" | grep -vqE "=> k8s\.io/[a-z0-9-]+ $STAGING_VERSION\$"; then
    die "$WRAPPER_DIR/go.mod maps a staging module to a version other than $STAGING_VERSION"
  fi
}

# Builds k8s.io/kubernetes/cmd/<cmd> into BIN_DIR, its output appended to <log>.
# Pure Go (CGO off: no C toolchain needed, static binaries); -trimpath so the output
# does not depend on where the module cache is. -mod=readonly: go.sum is committed,
# nothing is re-resolved. KUBE_BUILD_JOBS packages at once (default: every core in CI,
# else 1).
go_build_kube() {
  local blog="$1" cmd="$2" go jobs="${KUBE_BUILD_JOBS:-}"
  go="$(find_go)"
  if [[ -z "$jobs" ]]; then
    if [[ "${CI:-}" == true ]]; then jobs="$(nproc)"; else jobs=1; fi
  fi
  if ! (cd "$WRAPPER_DIR" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local \
    nice -n 19 "$go" build -p "$jobs" -trimpath -ldflags "$(ldflags)" \
    -o "$BIN_DIR/.tmp.$cmd" "k8s.io/kubernetes/cmd/$cmd") >>"$blog" 2>&1; then
    show_log_tail "$blog" 60
    die "go build k8s.io/kubernetes/cmd/$cmd failed (log: $blog)"
  fi
  mv "$BIN_DIR/.tmp.$cmd" "$BIN_DIR/$cmd"
}
