#!/usr/bin/env bash
# Install everything the build and the tests need, on a fresh Debian 12 machine.
#
# Idempotent and quiet: when everything is already there it only checks and prints
# one line, and it never runs `apt-get update` unless a package is actually missing
# (apt-get update is slow and needs the network).
#
#   openjdk-17-jre-headless  runs the test Elasticsearch (8.x needs Java 17)
#   maven                    fetches the Elasticsearch distribution from Maven Central
#   libsystemd-dev           sd-journal headers/library for the `systemd` crate
#   systemd-journal-remote   systemd-journal-remote writes journal files for journald tests
#   pkg-config               lets the `systemd` crate's build find libsystemd
#   curl unzip               health checks / unpacking the Elasticsearch zip
#   ca-certificates          TLS to the package registries
#   procps                   pgrep/ps, used by scripts/elasticsearch.sh
#   python3                  scripts/test.sh's reliability table, the bench-*.sh scripts
#
# Checked, not installed (neither comes from Debian 12 in the version needed):
#   Rust (cargo, rustfmt, clippy)  from rustup; rustfmt and clippy are added if missing
#   Go >= 1.26                     builds kube-apiserver, kubectl and kubelet once for the
#                                  tests against a real API server (scripts/kube-apiserver.sh,
#                                  run by scripts/test.sh); a warning names it when it is
#                                  missing, since running the gateway locally does not need it
set -euo pipefail

PACKAGES=(
  openjdk-17-jre-headless
  maven
  libsystemd-dev
  systemd-journal-remote
  pkg-config
  curl
  unzip
  ca-certificates
  procps
  python3
)

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# `dpkg -s` also succeeds for a removed package whose config files are still there
# ("deinstall ok config-files"), so look at the exact status instead.
is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

command -v dpkg-query >/dev/null 2>&1 || die "this script expects a Debian/Ubuntu system (dpkg-query not found)"

missing=()
for pkg in "${PACKAGES[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  log "installing: ${missing[*]}"
  # Root installs directly; a developer who is not root may have passwordless sudo
  # (-n: never prompt, CI has no stdin).
  if [[ $EUID -eq 0 ]]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    die "missing packages (${missing[*]}) and not root; run: sudo apt-get install ${missing[*]}"
  fi
  # Slim Debian images exclude /usr/share/man; the JRE's postinst then fails when
  # update-alternatives tries to link java.1.gz there. The directory is enough.
  "${SUDO[@]}" mkdir -p /usr/share/man/man1
  apt_log="$(mktemp -t klg-apt.XXXXXX)"
  export DEBIAN_FRONTEND=noninteractive
  if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
         "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
           "${missing[@]}"; } >"$apt_log" 2>&1; then
    tail -n 30 "$apt_log" >&2
    die "apt-get failed (full log: $apt_log)"
  fi
  rm -f "$apt_log"
  for pkg in "${missing[@]}"; do
    is_installed "$pkg" || die "package $pkg still not installed after apt-get install"
  done
  log "installed ${#missing[@]} package(s)"
else
  log "all ${#PACKAGES[@]} apt packages present"
fi

# Rust: installed by rustup on developer machines and CI; we don't install a
# toolchain here (only package registries are reachable), we only check it.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup (https://rustup.rs) and re-run"

if command -v rustup >/dev/null 2>&1; then
  # Run from the repo root so a rust-toolchain file, if one is added, picks the toolchain.
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  installed="$(rustup component list --installed 2>/dev/null || true)"
  want=()
  grep -q '^rustfmt' <<<"$installed" || want+=(rustfmt)
  grep -q '^clippy' <<<"$installed" || want+=(clippy)
  if ((${#want[@]} > 0)); then
    log "rustup component add ${want[*]}"
    if ! out="$(rustup component add "${want[@]}" 2>&1)"; then
      printf '%s\n' "$out" >&2
      die "rustup component add ${want[*]} failed"
    fi
  fi
fi
# Go: only scripts/kube-apiserver.sh needs it (the same places it looks in), and only
# until its binaries are cached; say so now rather than half-way through a test run.
GO_MIN_MINOR=26
go_ok=""
for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
  [[ -n $g && -x $g ]] || continue
  v="$("$g" env GOVERSION 2>/dev/null || true)"
  if [[ $v =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= GO_MIN_MINOR)); then
    go_ok="$v ($g)"
    break
  fi
done
if [[ -z $go_ok ]]; then
  log "WARNING: no Go 1.$GO_MIN_MINOR or newer found (go on PATH, /usr/local/go, /usr/lib/go)."
  log "  scripts/test.sh needs it unless kube-apiserver, kubectl and kubelet are already cached:"
  log "  scripts/kube-apiserver.sh build compiles them once with it. Install Go from https://go.dev/dl."
  log "  Running the gateway (scripts/run-local.sh) does not need it."
fi
log "ok"
