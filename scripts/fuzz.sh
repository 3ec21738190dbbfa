#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes with cargo-fuzz/libFuzzer:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS (default 60) is each target's -max_total_time; TARGETs default to all of
# fuzz/fuzz_targets/. Targets run one at a time (one core), after one build of all.
#
# * Toolchain: the stable one with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags;
#   no nightly is needed or installed). cargo-fuzz is installed if missing.
# * Sanitizer: FUZZ_SANITIZER (default: address). `none` builds without ASan, faster
#   to build and to run; a panic is still a crash.
# * Corpus: fuzz/corpus/<target>/ — its seed-* files are committed, whatever a run
#   adds there is not (.gitignore). The test fixtures and example configs are fed
#   in as extra seeds.
# * Build output: FUZZ_TARGET_DIR (default fuzz/target), never the main crate's target/;
#   scripts/test.sh keeps it in the cache directory, so a CI run rebuilds only what changed.
# * FUZZ_ARGS: more libFuzzer flags for every target (e.g. "-max_len=65536").
# * Lock file: fuzz/Cargo.lock is committed and never rewritten by a run. If it no
#   longer matches fuzz/Cargo.toml and the main crate's dependencies, the script stops
#   before building and prints the command that regenerates it from the main
#   Cargo.lock (same versions wherever the two overlap).
#
# Prints, per target, the execs/s and total execs of libFuzzer's final stats.
# Exits non-zero if any target crashed, timed out or ran out of memory; the
# artifact (fuzz/artifacts/<target>/crash-…, the input that did it) is named in
# the output. Reproduce one with:
#   RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=fuzz/target cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-…
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

seconds="${1:-60}"
if [[ $# -gt 0 ]]; then shift; fi
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$root/fuzz/target}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# Extra seeds from the repository, per target (comma-separated files).
extra_seeds() {
  case "$1" in
    audit_split_normalize) echo "$root/tests/fixtures/audit-eventlist.json" ;;
    config_load) echo "$root/config/gateway.yaml,$root/config/node.yaml" ;;
    *) echo "" ;;
  esac
}

cd fuzz
if ! cargo metadata --locked --format-version 1 >/dev/null 2>"${TMPDIR:-/tmp}/klg-fuzz-lock.err"; then
  cat "${TMPDIR:-/tmp}/klg-fuzz-lock.err" >&2
  echo "fuzz: fuzz/Cargo.lock is out of date with fuzz/Cargo.toml or the main crate's dependencies." >&2
  echo "      Regenerate it from the main lock file, then commit it:" >&2
  echo "      (cd fuzz && cp ../Cargo.lock Cargo.lock && cargo metadata --format-version 1 >/dev/null)" >&2
  exit 1
fi
rm -f "${TMPDIR:-/tmp}/klg-fuzz-lock.err"
build_start=$SECONDS
echo "==> build all fuzz targets once (sanitizer: $sanitizer, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo fuzz build -s "$sanitizer"
echo "build: $((SECONDS - build_start)) s"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"; rm -rf "${TMPDIR:-/tmp}"/klg-fuzz-config-*' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=25 -rss_limit_mb=2048)
  seeds="$(extra_seeds "$t")"
  if [[ -n $seeds ]]; then args+=(-seed_inputs="$seeds"); fi
  # shellcheck disable=SC2206 # word splitting of FUZZ_ARGS is intended
  args+=(${FUZZ_ARGS:-})
  echo
  echo "==> fuzz $t for $seconds s"
  start=$SECONDS
  rc=0
  cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" -- "${args[@]}" >"$logs/$t.log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  # The run's own lines, less libFuzzer's progress lines and recommended dictionary.
  awk '/Recommended dictionary/ {skip = 1} !skip && !/^#[0-9]/ && !/NEW_FUNC/ {print} /End of recommended dictionary/ {skip = 0}' \
    "$logs/$t.log" | tail -n 60
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logs/$t.log" | tail -1)
  result=ok
  if ((rc != 0)); then
    result="CRASH (exit $rc)"
    if [[ -n $artifact ]]; then result+=" artifact: $artifact"; fi
    failed+=("$t")
  fi
  line=$(printf '%-24s %5s s  %12s execs  %8s execs/s  %s' "$t" "$took" "${execs:-?}" "${rate:-?}" "$result")
  echo "$line"
  summary+=("$line")
done

echo
echo "==> fuzz summary ($seconds s per target, sanitizer: $sanitizer; load: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
