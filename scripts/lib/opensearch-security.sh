# shellcheck shell=bash
# OpenSearch with its security plugin: `ES_SERVER=os2 ES_SECURE=1 scripts/elasticsearch.sh`.
# Sourced by scripts/elasticsearch.sh (its globals: DIST, ES_VERSION, ES_HOME, INST,
# CACHE_DIR, ES_PASSWORD, ES_USER, SECURE_MARKER; its functions: fetch_zip, find_java,
# log, die, show_log_tail).
#
# The integ-test-zip has no security plugin, but Maven Central serves the plugin
# (org.opensearch.plugin:opensearch-security:<server version>.0:zip). It only installs
# into exactly the server version it was built for, so secured mode runs its own pin
# (SECURE_PIN in PINS), not the plain server's.
#   downloads/opensearch-security-<v>.0.zip       the plugin, fetched like the server
#   dist/opensearch-<v>-security/                 the distribution with the plugin installed
#
# What runs: HTTPS with ca.crt/server.crt/server.key (the same files, from ES_TLS_DIR or
# generated, as Elasticsearch's secured mode), and transport TLS with the same
# certificate (the plugin refuses to start without transport TLS; one node on loopback,
# so the node's DN in plugins.security.nodes_dn is all it needs). No demo configuration
# (install_demo_configuration.sh never runs, and the plugin's demo users are replaced):
# the security index is created at the first start from the files written here
# (plugins.security.allow_default_init_securityindex):
#   internal_users.yml  `admin` (password ES_PASSWORD, role all_access) and one user per
#                       ES_USERS_FILE line `name:password:role[,role]` (bcrypt hashes,
#                       made with the plugin's tools/hash.sh)
#   roles.yml           ES_ROLES_FILE (OpenSearch's roles.yml format, `_meta` added), or none
#   roles_mapping.yml   all_access for `admin`
# The security index lives in data/: later starts read it, not these files. A start with
# other passwords, users or roles than the ones that created it is refused: `wipe` first.

# The plugin's version for the server's.
os_security_plugin_version() { echo "$ES_VERSION.0"; }

# Under the fetch lock, after the server's distribution is unpacked: fetches the plugin,
# installs it into a copy of the distribution (once), and points ES_HOME at that copy.
os_security_distribution() {
  local v home plugin_zip tmp java_home
  v="$(os_security_plugin_version)"
  home="$ES_HOME-security"
  plugin_zip="$CACHE_DIR/downloads/opensearch-security-$v.zip"
  fetch_zip "org.opensearch.plugin:opensearch-security:$v:zip" "$plugin_zip"
  if [[ ! -d "$home/plugins/opensearch-security" ]]; then
    java_home="$(find_java)"
    tmp="$CACHE_DIR/dist/.tmp.$$"
    rm -rf "$tmp"
    cp -a "$ES_HOME" "$tmp"
    log "installing opensearch-security $v into $home"
    # --batch: the plugin asks for extra Java permissions, which would prompt.
    if ! env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 OPENSEARCH_JAVA_HOME="$java_home" \
      OPENSEARCH_PATH_CONF="$tmp/config" "$tmp/bin/opensearch-plugin" install --batch "file://$plugin_zip" \
      >"$CACHE_DIR/dist/plugin-install.log" 2>&1; then
      show_log_tail "$CACHE_DIR/dist/plugin-install.log"
      rm -rf "$tmp"
      die "could not install opensearch-security $v into opensearch $ES_VERSION (the plugin must match the server's version exactly)"
    fi
    chmod -R a+rX "$tmp"
    rm -f "$CACHE_DIR/dist/plugin-install.log"
    # Rename last, so a half-installed tree is never taken for a complete one.
    mv "$tmp" "$home"
  fi
  ES_HOME="$home"
}

# The security part of opensearch.yml (config/tls/ is already in place).
os_security_settings() {
  local node_dn
  node_dn="$(openssl x509 -in "$INST/config/tls/server.crt" -noout -subject -nameopt RFC2253)" ||
    die "cannot read the subject of $INST/config/tls/server.crt (openssl)"
  node_dn="${node_dn#subject=}"
  node_dn="${node_dn# }"
  cat <<EOT
$SECURE_MARKER
plugins.security.ssl.http.enabled: true
plugins.security.ssl.http.pemcert_filepath: tls/server.crt
plugins.security.ssl.http.pemkey_filepath: tls/server.key
plugins.security.ssl.http.pemtrustedcas_filepath: tls/ca.crt
# Required by the plugin even on one node: the same certificate and CA.
plugins.security.ssl.transport.pemcert_filepath: tls/server.crt
plugins.security.ssl.transport.pemkey_filepath: tls/server.key
plugins.security.ssl.transport.pemtrustedcas_filepath: tls/ca.crt
plugins.security.ssl.transport.enforce_hostname_verification: false
plugins.security.nodes_dn: ['$node_dn']
# The security index is created from config/opensearch-security/ at the first start.
plugins.security.allow_default_init_securityindex: true
plugins.security.restapi.roles_enabled: [all_access]
plugins.security.system_indices.enabled: true
EOT
}

# A bcrypt hash of $1, with the plugin's own tool (as the runtime user, like the server).
os_security_hash() {
  local java_home="$1" out run_as=()
  [[ $EUID -eq 0 ]] && run_as=(runuser -u "$ES_USER" --)
  # -env: the password is read from the environment, never a command line.
  out="$("${run_as[@]}" env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    OPENSEARCH_JAVA_HOME="$java_home" KLG_HASH_PASSWORD="$2" \
    bash "$ES_HOME/plugins/opensearch-security/tools/hash.sh" -env KLG_HASH_PASSWORD 2>&1)" ||
    die "plugins/opensearch-security/tools/hash.sh failed: $out"
  out="$(grep -E '^\$2[aby]\$' <<<"$out" | tail -n 1)"
  [[ -n "$out" ]] || die "plugins/opensearch-security/tools/hash.sh printed no bcrypt hash"
  echo "$out"
}

# Before the start: the users, roles and mappings the security index is created from.
os_security_files() {
  local java_home="$1" dir="$INST/config/opensearch-security" line name password roles sum
  [[ -z "${ES_USERS_FILE:-}" || -r "$ES_USERS_FILE" ]] || die "cannot read ES_USERS_FILE=$ES_USERS_FILE"
  [[ -z "${ES_ROLES_FILE:-}" || -r "$ES_ROLES_FILE" ]] || die "cannot read ES_ROLES_FILE=$ES_ROLES_FILE"
  # What the security index in data/ was created from (a checksum, not the passwords).
  sum="$( { echo "$ES_PASSWORD"; cat "${ES_USERS_FILE:-/dev/null}" "${ES_ROLES_FILE:-/dev/null}"; } | sha256sum)"
  sum="${sum%% *}"
  if [[ -n "$(ls -A "$INST/data" 2>/dev/null)" ]]; then
    [[ "$(cat "$INST/security-init.sum" 2>/dev/null)" == "$sum" ]] ||
      die "the data in $INST/data was not created by a secured start with these ES_PASSWORD, ES_USERS_FILE and ES_ROLES_FILE (OpenSearch keeps users in its security index): wipe first"
  fi
  echo "$sum" >"$INST/security-init.sum"

  {
    printf '_meta:\n  type: "internalusers"\n  config_version: 2\n'
    printf 'admin:\n  hash: "%s"\n  reserved: true\n  description: "superuser (scripts/elasticsearch.sh)"\n' \
      "$(os_security_hash "$java_home" "$ES_PASSWORD")"
    if [[ -n "${ES_USERS_FILE:-}" ]]; then
      while IFS= read -r line || [[ -n "$line" ]]; do
        [[ -z "$line" || "$line" == \#* ]] && continue
        IFS=: read -r name password roles <<<"$line"
        [[ -n "$name" && -n "$password" ]] || die "ES_USERS_FILE: expected name:password:roles, got '$line'"
        printf '%s:\n  hash: "%s"\n  reserved: false\n  opendistro_security_roles: [%s]\n' \
          "$name" "$(os_security_hash "$java_home" "$password")" "$roles"
      done <"$ES_USERS_FILE"
    fi
  } >"$dir/internal_users.yml"
  {
    printf '_meta:\n  type: "roles"\n  config_version: 2\n'
    if [[ -n "${ES_ROLES_FILE:-}" ]]; then grep -v -e "^_meta:" -e "^  type:" -e "^  config_version:" "$ES_ROLES_FILE" || true; fi
  } >"$dir/roles.yml"
  printf '_meta:\n  type: "rolesmapping"\n  config_version: 2\nall_access:\n  reserved: false\n  users: [admin]\n' \
    >"$dir/roles_mapping.yml"
  # The plugin warns about every file in it that others can read.
  chmod -R go-rwx "$dir"
  if [[ $EUID -eq 0 ]]; then chown -R "$ES_USER:$ES_USER" "$dir" "$INST/security-init.sum"; fi
}
