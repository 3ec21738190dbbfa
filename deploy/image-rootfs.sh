#!/usr/bin/env bash
# The image's whole file system, from a built binary, on Debian 12 (bookworm):
#
#   deploy/image-rootfs.sh BINARY ROOTFS_DIR
#
# One list of contents for both ways the image is made, so they cannot drift apart:
# deploy/Dockerfile runs this in its build stage and copies ROOTFS_DIR onto `scratch`;
# scripts/image.sh runs it on the build host and packs ROOTFS_DIR into an OCI layout tar
# for containerd (no registry, no daemon). Both take USER, ENTRYPOINT, CMD and EXPOSE
# from the Dockerfile's last stage.
#
# Contents (nothing else: no shell, no package manager):
#   /usr/local/bin/kube-log-gateway       the binary
#   its shared libraries, as `ldd` resolves them (glibc, libgcc_s, and libsystemd with
#   what it links: the journald source reads journal files through sd-journal)
#   /etc/ssl/certs/ca-certificates.crt    TLS to Elasticsearch and the Kubernetes API
#   /etc/passwd, /etc/group               root, klg (10001), nobody
#   /var/lib/kube-log-gateway             data_dir, owned by klg (the gateway runs as 10001)
#   /tmp                                  1777
# /lib, /lib64 and /bin are symlinks into /usr, as on Debian 12 (merged /usr).
set -euo pipefail

die() { printf 'image-rootfs: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 ]] || die "usage: $0 BINARY ROOTFS_DIR"
bin="$1"
root="$2"
[[ -x "$bin" ]] || die "$bin is not an executable file"
[[ -r /etc/ssl/certs/ca-certificates.crt ]] || die "/etc/ssl/certs/ca-certificates.crt missing (apt-get install ca-certificates)"
[[ ! -e "$root" || -z "$(ls -A "$root")" ]] || die "$root is not empty"

mkdir -p "$root"/{usr/local/bin,usr/lib,usr/lib64,etc/ssl/certs,var/lib,tmp}
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s usr/bin "$root/bin"
mkdir -p "$root/usr/bin"
chmod 1777 "$root/tmp"

install -m 0755 "$bin" "$root/usr/local/bin/kube-log-gateway"

# Every library the dynamic linker loads, the linker itself included, at the path it is
# looked up by (under merged /usr: /lib/x → /usr/lib/x).
libs="$(ldd "$bin" | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}')" || die "ldd $bin failed"
[[ -n "$libs" ]] || die "ldd found no shared libraries for $bin (a static binary needs no rootfs script)"
grep -q 'libsystemd\.so' <<<"$libs" || die "$bin does not link libsystemd (built without the journald source?)"
while read -r lib; do
  [[ -n "$lib" ]] || continue
  dest="${lib#/usr}"
  dest="$root/usr$dest"
  mkdir -p "$(dirname "$dest")"
  cp -L "$lib" "$dest"
  chmod 0644 "$dest"
done <<<"$libs"
chmod 0755 "$root"/usr/lib64/ld-linux-*.so.* 2>/dev/null || true

cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"

printf '%s\n' 'root:x:0:0:root:/root:/usr/sbin/nologin' \
  'klg:x:10001:10001:kube-log-gateway:/nonexistent:/usr/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'klg:x:10001:' 'nogroup:x:65534:' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

install -d -o 10001 -g 10001 -m 0750 "$root/var/lib/kube-log-gateway"
