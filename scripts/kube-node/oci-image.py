#!/usr/bin/env python3
"""Write a container image as an OCI image layout tar, without a registry or a daemon.

    oci-image.py --out IMAGE.tar --name klg.local/busybox:1 \
        [--rootfs DIR] [--file SRC:DST[:MODE]]... [--symlink DST:TARGET]... [--dir DST[:MODE[:UID:GID]]]... \
        [--entrypoint JSON] [--cmd JSON] [--user UID:GID] [--env K=V]... [--workdir DIR] \
        [--label K=V]... [--expose PORT]...

The tar holds oci-layout, index.json, one manifest, one config and one gzip layer. The
index names the image twice, as containerd's importer reads it: the full reference in
`io.containerd.image.name` and the tag in `org.opencontainers.image.ref.name`, so
`ctr -n k8s.io images import IMAGE.tar` registers it under --name.

The output is reproducible: every entry has mtime 0 and root ownership unless given,
entries are sorted, gzip carries no timestamp. The same inputs give the same digest, so
re-importing an unchanged image is a no-op for containerd and kubelet.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile


def die(msg):
    print(f"oci-image: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True, help="full reference, e.g. klg.local/busybox:1")
    p.add_argument("--rootfs", help="a directory to take as the layer (owners and modes as on disk)")
    p.add_argument("--file", action="append", default=[], help="SRC:DST[:MODE] (mode octal)")
    p.add_argument("--symlink", action="append", default=[], help="DST:TARGET")
    p.add_argument("--dir", action="append", default=[], help="DST[:MODE[:UID:GID]]")
    p.add_argument("--entrypoint", help="JSON list")
    p.add_argument("--cmd", help="JSON list")
    p.add_argument("--user")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--expose", action="append", default=[])
    return p.parse_args()


def add_parents(entries, path):
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        entries.setdefault(d, ("dir", 0o755, 0, 0, None))


def build_layer(args):
    # name (no leading slash) -> (kind, mode, uid, gid, payload)
    entries = {}
    if args.rootfs:
        if not os.path.isdir(args.rootfs):
            die(f"--rootfs {args.rootfs} is not a directory")
        for top, dirs, files in os.walk(args.rootfs):
            for n in dirs + files:
                full = os.path.join(top, n)
                name = os.path.relpath(full, args.rootfs)
                st = os.lstat(full)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    entries[name] = ("symlink", 0o777, st.st_uid, st.st_gid, os.readlink(full))
                elif stat.S_ISDIR(st.st_mode):
                    entries[name] = ("dir", mode, st.st_uid, st.st_gid, None)
                elif stat.S_ISREG(st.st_mode):
                    entries[name] = ("file", mode, st.st_uid, st.st_gid, full)
                else:
                    die(f"--rootfs: {full} is neither a file, a directory nor a symlink")
    for spec in args.dir:
        f = spec.split(":")
        name = f[0].strip("/")
        mode = int(f[1], 8) if len(f) > 1 and f[1] else 0o755
        uid, gid = (int(f[2]), int(f[3])) if len(f) > 3 else (0, 0)
        add_parents(entries, name)
        entries[name] = ("dir", mode, uid, gid, None)
    for spec in args.file:
        f = spec.split(":")
        if len(f) < 2:
            die(f"--file needs SRC:DST (got '{spec}')")
        src, name = f[0], f[1].strip("/")
        if not os.path.isfile(src):
            die(f"--file {spec}: {src} is not a readable file")
        mode = int(f[2], 8) if len(f) > 2 else (0o755 if os.access(src, os.X_OK) else 0o644)
        add_parents(entries, name)
        entries[name] = ("file", mode, 0, 0, src)
    for spec in args.symlink:
        name, _, target = spec.partition(":")
        if not target:
            die(f"--symlink needs DST:TARGET (got '{spec}')")
        name = name.strip("/")
        add_parents(entries, name)
        entries[name] = ("symlink", 0o777, 0, 0, target)
    if not entries:
        die("the layer is empty: give --rootfs, --file, --dir or --symlink")

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            kind, mode, uid, gid, payload = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.mode = mode
            info.uid, info.gid = uid, gid
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
                tar.addfile(info)
            else:
                info.size = os.path.getsize(payload)
                with open(payload, "rb") as fh:
                    tar.addfile(info, fh)
    diff = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as g:
        g.write(diff)
    return diff, gz.getvalue()


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def main():
    args = parse_args()
    if ":" not in args.name.rsplit("/", 1)[-1]:
        die(f"--name must carry a tag (got '{args.name}')")
    tag = args.name.rsplit(":", 1)[1]
    diff, layer = build_layer(args)

    cfg = {}
    if args.entrypoint:
        cfg["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        cfg["Cmd"] = json.loads(args.cmd)
    if args.user:
        cfg["User"] = args.user
    cfg["Env"] = ["PATH=/usr/local/bin:/usr/bin:/bin"] + args.env
    if args.workdir:
        cfg["WorkingDir"] = args.workdir
    if args.label:
        cfg["Labels"] = dict(kv.split("=", 1) for kv in args.label)
    if args.expose:
        cfg["ExposedPorts"] = {f"{p}/tcp": {} for p in args.expose}
    config = json.dumps(
        {
            "created": "1970-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [sha(diff)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/kube-node/oci-image.py"}],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": args.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as out:
        def put(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            out.addfile(info, io.BytesIO(data))

        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", index)
        for blob in (manifest, config, layer):
            put("blobs/sha256/" + sha(blob)[7:], blob)
    os.replace(tmp, args.out)
    print(sha(manifest))


if __name__ == "__main__":
    main()
