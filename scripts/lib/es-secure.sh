# Sourced by scripts/elasticsearch.sh: secured mode (ES_SECURE=1): the settings,
# certificates, keystore and file-realm users of a secured Elasticsearch (OpenSearch's
# security plugin is in lib/opensearch-security.sh). Uses the instance globals and
# helpers of that script.
# shellcheck shell=bash
#
# Secured mode (opt-in; the default is plain HTTP without authentication):
#   ES_SECURE=1   security on: HTTPS only (PEM certificate), basic auth for the built-in
#                 `elastic` superuser and file-realm users, the token service (bearer
#                 tokens) and API keys enabled (but see below). Transport TLS stays off:
#                 one node, loopback only.
#   ES_TLS_DIR    directory with ca.crt, server.crt, server.key (as written by
#                 `kube-log-gateway certs --out DIR`: SANs localhost and 127.0.0.1). They
#                 are copied into the instance's config/tls/, so klg-es can read them.
#                 Unset: generated once into instances/<port>/tls-generated/ with the
#                 kube-log-gateway binary (KLG_BIN, PATH or target/{release,debug}).
#   ES_PASSWORD   the `elastic` user's bootstrap password (default klg-elastic-pw), put in
#                 the instance's own keystore. It stays valid until someone changes it
#                 through the API; `wipe` forgets it.
#   ES_ROLES_FILE a roles.yml (file-realm roles) to use instead of the distribution's.
#   ES_USERS_FILE file-realm users to create, one `name:password:role[,role]` a line.
#   The `.security` index, where API keys live, needs the `uax_url_email` tokenizer and
#   the `pattern_capture` and `unique` filters of analysis-common, a module the
#   integ-test-zip lacks ("Unknown filter type [pattern_capture] for [email]"). So
#   secured mode runs a hard-linked copy of the distribution with a small plugin that
#   provides them (scripts/es-analysis-plugin, built with javac once per source hash):
#   API keys can be created, used and invalidated (tests/es_security.rs). Users and
#   roles here come from the file realm (ES_USERS_FILE, ES_ROLES_FILE) and `elastic`
#   from the keystore. Bearer tokens live in `.security-tokens-7` and need a licence
#   above basic: secured mode runs the self-generated 30-day trial licence (counted
#   from the first start; `wipe`).
#   Clients: https://127.0.0.1:$ES_PORT, CA = instances/<port>/config/tls/ca.crt.
#   OpenSearch (ES_SERVER=os2): the same HTTPS and certificates, plus the security plugin
#   on its own pinned server version, with transport TLS, the superuser `admin`
#   (ES_PASSWORD) and ES_USERS_FILE / ES_ROLES_FILE as internal users and roles; see
#   scripts/lib/opensearch-security.sh.
#   `status` and an "already running" `start` read the mode from the instance's config.
#   Switching one port between modes: `wipe` first is not required, but `stop` is.
#

# The security part of elasticsearch.yml. Default: exactly the plain settings.
security_settings() {
  if [[ "$DIST" == opensearch ]]; then
    if requested_secure; then os_security_settings; return; fi
    printf '%s\n' "# OpenSearch's integ-test-zip has no security plugin: plain HTTP."
    return
  fi
  if ! requested_secure; then
    printf '%s\n' "# Plain HTTP without authentication (otherwise TLS + a generated password)." \
      "xpack.security.enabled: false"
    return
  fi
  # Explicit xpack.security.* settings also keep the distribution's start-up
  # "security auto-configuration" (generated certs + enrollment) from running.
  cat <<EOF
$SECURE_MARKER
xpack.security.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.certificate: tls/server.crt
xpack.security.http.ssl.key: tls/server.key
xpack.security.http.ssl.certificate_authorities: [tls/ca.crt]
# Single node, development mode on loopback: no transport TLS needed.
xpack.security.transport.ssl.enabled: false
xpack.security.authc.api_key.enabled: true
xpack.security.authc.token.enabled: true
# The token service (bearer tokens) is not in the basic licence.
xpack.license.self_generated.type: trial
EOF
}

# Finds the kube-log-gateway binary, to generate certificates when ES_TLS_DIR is unset.
find_klg_bin() {
  local c
  for c in "${KLG_BIN:-}" "$(command -v kube-log-gateway 2>/dev/null || true)" \
    "$SCRIPT_DIR/../target/release/kube-log-gateway" "$SCRIPT_DIR/../target/debug/kube-log-gateway"; do
    [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
  done
  return 1
}

copy_tls_files() {
  local src="${ES_TLS_DIR:-}" f bin
  if [[ -z "$src" ]]; then
    src="$INST/tls-generated"
    if [[ ! -f "$src/server.key" ]]; then
      bin="$(find_klg_bin)" || die "ES_SECURE=1 needs ES_TLS_DIR (ca.crt server.crt server.key), or a built kube-log-gateway to generate them (cargo build, or KLG_BIN=...)"
      "$bin" certs --out "$src" >/dev/null || die "could not generate certificates into $src"
      log "generated a CA and server certificate into $src"
    fi
  fi
  for f in ca.crt server.crt server.key; do
    [[ -r "$src/$f" ]] || die "ES_TLS_DIR=$src has no readable $f"
  done
  mkdir -p "$INST/config/tls"
  cp "$src/ca.crt" "$src/server.crt" "$src/server.key" "$INST/config/tls/"
  chmod 0644 "$INST/config/tls/ca.crt" "$INST/config/tls/server.crt"
  chmod 0600 "$INST/config/tls/server.key" # chowned to the runtime user with the rest
  if [[ -n "${ES_ROLES_FILE:-}" ]]; then
    cp "$ES_ROLES_FILE" "$INST/config/roles.yml" || die "cannot copy ES_ROLES_FILE=$ES_ROLES_FILE"
  fi
}

# Runs one of the distribution's CLI tools for this instance, as the runtime user, in
# the same clean environment as the server. $1: the java home; then the tool and args.
es_tool() {
  local java_home="$1" run_as=()
  shift
  [[ $EUID -eq 0 ]] && run_as=(runuser -u "$ES_USER" --)
  "${run_as[@]}" env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    ES_JAVA_HOME="$java_home" ES_PATH_CONF="$INST/config" ES_TMPDIR="$INST/tmp" \
    "$ES_HOME/bin/$1" "${@:2}"
}

# Secured mode, before the start: the elastic user's bootstrap password in this
# instance's own keystore (config/ is regenerated on every start, so the keystore and
# the file-realm users are too), then the ES_USERS_FILE users.
write_secrets() {
  local java_home="$1" line name password roles
  if [[ "$DIST" == opensearch ]]; then os_security_files "$java_home"; return; fi
  printf '%s\n' "$ES_PASSWORD" |
    es_tool "$java_home" elasticsearch-keystore add --force --stdin bootstrap.password \
      >"$INST/logs/keystore.out" 2>&1 ||
    { show_log_tail "$INST/logs/keystore.out"; die "could not write bootstrap.password into $INST/config/elasticsearch.keystore"; }
  [[ -n "${ES_USERS_FILE:-}" ]] || return 0
  [[ -r "$ES_USERS_FILE" ]] || die "cannot read ES_USERS_FILE=$ES_USERS_FILE"
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    IFS=: read -r name password roles <<<"$line"
    [[ -n "$name" && -n "$password" ]] || die "ES_USERS_FILE: expected name:password:roles, got '$line'"
    es_tool "$java_home" elasticsearch-users useradd "$name" -p "$password" -r "$roles" \
      >"$INST/logs/users.out" 2>&1 ||
      { show_log_tail "$INST/logs/users.out"; die "could not add file-realm user $name"; }
  done <"$ES_USERS_FILE"
}
