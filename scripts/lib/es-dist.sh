# Sourced by scripts/elasticsearch.sh: fetching (through Maven, verified) and unpacking
# the distribution each server runs from. Uses the pins and paths of that script.
# shellcheck shell=bash
#
# Servers (ES_SERVER), each pinned once, in PINS in scripts/elasticsearch.sh, and each on
# its own default port:
#   es8  Elasticsearch 8.19 (the main version: the whole test suite runs on it)
#   es9  Elasticsearch 9.x, the newest integ-test-zip Maven Central serves (9.5.5 and
#        9.6.0 are not served; 9.5.4 is)
#   os2  OpenSearch 2.19 (org.opensearch.distribution.integ-test-zip:opensearch:<v>:zip)
#   os3  OpenSearch 3.x (needs Java 21+; the newest served: 3.8.0)
# OpenSearch's integ-test-zip is the bare server with transport-netty4 only: no security
# plugin (ES_SECURE=1 installs it, on os2's SECURE_PIN), no index-management plugin (so no
# ISM), no `GET /` quirk.
#
# What runs: the "integ-test-zip" distribution that Elasticsearch publishes to Maven
# Central (org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip).
# It is the server with only a few modules (x-pack-core, x-pack-security,
# transport-netty4, apm): no ingest-common, mapper-extras, painless or analysis-common,
# so tests must keep to core features. Data streams work (writes, `_rollover`,
# `_resolve/index`; 8.19.21 and 9.5.4), only the `GET _data_stream` API is missing.
# Two quirks of this build:
#   - `GET /` (the "info" endpoint) answers 405: the rest-root module is not in it.
#     `status` therefore reads the version from `GET /_nodes/_local`.
#   - x-pack-security IS in it, so security would be ON by default (with auto-generated
#     TLS certificates and a password nobody knows): we set xpack.security.enabled=false.
#   Settings of modules that are not there (e.g. ingest.geoip.downloader.enabled) make
#   it refuse to start ("unknown setting").
#

# $1: the artifact (default: the server's), $2: where its zip goes (default: $ZIP).
fetch_zip() {
  local artifact="${1:-$GROUP:$DIST:$ES_VERSION:zip}" ZIP="${2:-$ZIP}" name
  [[ -f "$ZIP" ]] && unzip -tq "$ZIP" >/dev/null 2>&1 && return 0
  [[ -f "$ZIP" ]] && { log "cached zip is incomplete or corrupt, fetching again"; rm -f "$ZIP"; }
  command -v mvn >/dev/null 2>&1 || bash "$SCRIPT_DIR/setup.sh"
  command -v mvn >/dev/null 2>&1 || die "mvn not found after scripts/setup.sh"

  IFS=: read -r _ name _ <<<"$artifact"
  name="$name-$(cut -d: -f3 <<<"$artifact").zip"
  local tmp="$CACHE_DIR/downloads/.tmp.$$" mvn_log="$CACHE_DIR/downloads/mvn.log" t0=$SECONDS
  log "fetching $artifact from Maven Central (once; about 50-110 MB)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Own local repository inside the cache: the whole cache can be deleted in one go,
  # and a corrupt download there cannot be "copied" again from ~/.m2.
  # Batch mode: no colours and no prompts (CI has no stdin). Plugin version pinned
  # because Maven 3.8's default maven-dependency-plugin is old.
  if ! mvn -B -q -Dmaven.repo.local="$CACHE_DIR/m2" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    -Dartifact="$artifact" -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    rm -rf "$tmp"
    die "mvn could not fetch $artifact (log: $mvn_log). Is ES_VERSION=$ES_VERSION published?"
  fi
  # The zip is now both in $tmp and in the Maven repository: keep one copy.
  rm -rf "$CACHE_DIR/m2/org/$DIST"
  unzip -tq "$tmp/$name" >/dev/null 2>&1 ||
    { rm -rf "$tmp"; die "downloaded zip is corrupt; run the command again"; }
  mv "$tmp/$name" "$ZIP"
  rm -rf "$tmp" "$mvn_log"
  log "fetched in $((SECONDS - t0)) s"
}

unpack() {
  [[ -x "$ES_HOME/bin/$DIST" ]] && return 0
  local tmp="$CACHE_DIR/dist/.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  unzip -q "$ZIP" -d "$tmp" || { rm -rf "$tmp"; die "could not unpack $ZIP"; }
  [[ -x "$tmp/$DIST-$ES_VERSION/bin/$DIST" ]] ||
    { rm -rf "$tmp"; die "$ZIP has no $DIST-$ES_VERSION/bin/$DIST"; }
  # Readable by the unprivileged runtime user whatever our umask is.
  chmod -R a+rX "$tmp"
  rm -rf "$ES_HOME"
  # Rename last, so a half-unpacked tree is never taken for a complete one.
  mv "$tmp/$DIST-$ES_VERSION" "$ES_HOME"
  rm -rf "$tmp"
}

ensure_distribution() {
  mkdir -p "$CACHE_DIR/downloads" "$CACHE_DIR/dist" "$CACHE_DIR/instances"
  if [[ $EUID -eq 0 ]]; then
    # The runtime user must reach dist/ and instances/ (not downloads/ or m2/).
    chmod a+rx "$CACHE_DIR" "$CACHE_DIR/dist" "$CACHE_DIR/instances"
  fi
  # Leftovers of an interrupted fetch/unpack; safe to remove, we hold the fetch lock.
  rm -rf "$CACHE_DIR"/downloads/.tmp.* "$CACHE_DIR"/dist/.tmp.*
  fetch_zip
  unpack
  if requested_secure && [[ "$DIST" == opensearch ]]; then os_security_distribution; fi
}
