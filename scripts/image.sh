#!/usr/bin/env bash
# The project's container image without Docker or a registry, for the test cluster.
#
#   scripts/image.sh build [TAG]    cargo build --release, then write the image as an OCI
#                                   layout tar: target/image/kube-log-gateway-TAG.tar
#   scripts/image.sh import [TAG]   build, then `ctr -n k8s.io images import` it into the
#                                   containerd of scripts/kube-node.sh; prints the reference
#
# TAG defaults to `dev`; the reference is klg.local/kube-log-gateway:TAG. Pods use it with
# imagePullPolicy: Never (the chart's test values). The tag is also the image's
# org.opencontainers.image.version label, so two tags of one binary are two digests (a
# rollout to the other tag changes what the pods run, as a rebuilt release would).
#
# Same image as deploy/Dockerfile, by construction: the file system comes from
# deploy/image-rootfs.sh (which the Dockerfile's build stage runs too), and USER,
# ENTRYPOINT, CMD and EXPOSE are read from the Dockerfile's last stage. The host must be
# Debian 12 (bookworm), as the Dockerfile's stages are, so the libraries copied next to
# the binary are the ones it was linked against.
#
# Environment: CARGO_TARGET_DIR as for cargo; NODE_DIR as for scripts/kube-node.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_DIR="$(pwd)"
NAME=klg.local/kube-log-gateway

log() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: ERROR: %s\n' "$*" >&2; exit 1; }

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# The value of instruction $1 in the Dockerfile's last stage (after the last FROM).
dockerfile_value() {
  awk -v k="$1" '/^FROM /{v=""} $1==k {sub("^" k "[ \t]+", ""); v=$0} END {print v}' deploy/Dockerfile
}

do_build() {
  local tag="$1" target out root user entrypoint cmd expose args=()
  [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "TAG must be a valid image tag (got '$tag')"
  grep -q 'VERSION_CODENAME=bookworm' /etc/os-release ||
    die "build host is not Debian 12 (bookworm): the libraries would not match deploy/Dockerfile's"
  local t0=$SECONDS
  cargo build --release --locked --bin kube-log-gateway >&2
  target="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
  out="$target/image/kube-log-gateway-$tag.tar"
  root="$(mktemp -d "${TMPDIR:-/tmp}/klg-rootfs.XXXXXX")"
  rmdir "$root"
  bash deploy/image-rootfs.sh "$target/release/kube-log-gateway" "$root"

  user="$(dockerfile_value USER)"
  entrypoint="$(dockerfile_value ENTRYPOINT)"
  cmd="$(dockerfile_value CMD)"
  expose="$(dockerfile_value EXPOSE)"
  [[ -n "$user" && "$entrypoint" == \[* && "$cmd" == \[* ]] ||
    die "deploy/Dockerfile's last stage needs USER and exec-form ENTRYPOINT and CMD (got '$user' '$entrypoint' '$cmd')"
  local p
  for p in $expose; do args+=(--expose "$p"); done
  mkdir -p "$(dirname "$out")"
  python3 scripts/kube-node/oci-image.py --out "$out" --name "$NAME:$tag" --rootfs "$root" \
    --user "$user" --entrypoint "$entrypoint" --cmd "$cmd" "${args[@]}" \
    --label "org.opencontainers.image.source=deploy/Dockerfile" \
    --label "org.opencontainers.image.version=$tag" >/dev/null
  rm -rf "$root"
  log "$NAME:$tag: $out ($(du -h "$out" | cut -f1), $((SECONDS - t0)) s)"
  echo "$out"
}

do_import() {
  local tag="$1" out ctr
  ctr="$(bash scripts/kube-node.sh env 2>/dev/null | sed -n 's/^CTR="\(.*\)"$/\1/p')" || true
  [[ -n "$ctr" ]] || die "the test node is not running (scripts/kube-node.sh start)"
  out="$(do_build "$tag")"
  # shellcheck disable=SC2086
  $ctr images import "$out" >/dev/null
  log "imported $NAME:$tag into the node's containerd"
  echo "$NAME:$tag"
}

case "${1:-}" in
  build) do_build "${2:-dev}" ;;
  import) do_import "${2:-dev}" ;;
  *)
    echo "usage: $0 build|import [TAG]" >&2
    exit 2
    ;;
esac
