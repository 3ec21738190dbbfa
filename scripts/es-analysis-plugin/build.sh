#!/usr/bin/env bash
# Builds the analysis plugin of this directory (SecurityIndexAnalysisPlugin.java says
# why it exists) against an Elasticsearch distribution with javac, and prints the path
# of an Elasticsearch home that has it installed: OUT_DIR/<distribution>+analysis-<hash>,
# the distribution's files hard-linked, the plugin in plugins/klg-analysis/. The
# distribution itself is not touched, so plain instances never load the plugin.
# Cached by the hash of the sources and the version: once built, a call only prints.
#
#   build.sh ES_HOME JAVA_HOME OUT_DIR      (ES_HOME = .../elasticsearch-<version>)
set -euo pipefail
es_home="$1" java_home="$2" out="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { printf 'es-analysis-plugin: ERROR: %s\n' "$*" >&2; exit 1; }
version="${es_home##*-}"
hash="$(cat "$here/SecurityIndexAnalysisPlugin.java" "$here/build.sh" <(echo "$version") | sha256sum | cut -c1-12)"
home="$out/${es_home##*/}+analysis-$hash"
[[ -x "$home/bin/elasticsearch" ]] && { echo "$home"; exit 0; }

exec {lock_fd}>"$out/.analysis-plugin.lock"
flock -w 600 "$lock_fd" || die "timed out waiting for $out/.analysis-plugin.lock"
[[ -x "$home/bin/elasticsearch" ]] && { echo "$home"; exit 0; }
rm -rf "$out"/.analysis-build.*   # an interrupted build's; we hold the lock
tmp="$out/.analysis-build.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/classes"
bin="$java_home/bin"
[[ -x "$bin/javac" ]] || bin="$(dirname "$(command -v javac)")" || die "no javac (a JDK 17+) in $java_home or on PATH"
"$bin/javac" --release 17 -nowarn -cp "$es_home/lib/*" -d "$tmp/classes" \
  "$here/SecurityIndexAnalysisPlugin.java" >&2 || die "could not compile the plugin against $es_home"
cp -al "$es_home" "$tmp/home"
plugin="$tmp/home/plugins/klg-analysis"
mkdir -p "$plugin"
"$bin/jar" --create --file "$plugin/klg-analysis.jar" -C "$tmp/classes" .
cat >"$plugin/plugin-descriptor.properties" <<EOF
description=uax_url_email, pattern_capture and unique for the .security index (no analysis-common in the integ-test-zip)
version=$version
name=klg-analysis
classname=klg.analysis.SecurityIndexAnalysisPlugin
java.version=17
elasticsearch.version=$version
EOF
chmod -R a+rX "$plugin"
mv "$tmp/home" "$home"
echo "$home"
