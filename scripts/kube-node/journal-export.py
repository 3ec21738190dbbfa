#!/usr/bin/env python3
"""Turn a daemon's log lines (stdin) into Journal Export Format entries (stdout).

    kubelet ... 2>&1 | journal-export.py --unit kubelet.service --identifier kubelet --pid PID \
        | systemd-journal-remote --output=DIR/kubelet.journal --split-mode=none -

PID 1 on the test machines is not systemd, so no journald collects kubelet's output.
This gives kubelet's lines the fields journald would: _SYSTEMD_UNIT, SYSLOG_IDENTIFIER,
_PID, _COMM, _HOSTNAME, _MACHINE_ID, _BOOT_ID, PRIORITY (from klog's severity letter:
I 6, W 4, E 3, F 2) and the realtime/monotonic timestamps, one entry per line, flushed
at once; systemd-journal-remote writes them into a real journal file, which the node
role reads as it reads a host's /var/log/journal.
"""

import argparse
import os
import socket
import sys
import time

SEVERITY = {"I": "6", "W": "4", "E": "3", "F": "2"}


def field(name, value):
    data = value.encode("utf-8", "replace")
    if b"\n" in data:
        return name.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--unit", required=True)
    p.add_argument("--identifier", required=True)
    p.add_argument("--pid", default=str(os.getppid()))
    args = p.parse_args()
    boot = open("/proc/sys/kernel/random/boot_id").read().strip().replace("-", "")
    machine = open("/etc/machine-id").read().strip()
    host = socket.gethostname()
    out = sys.stdout.buffer
    fixed = (
        field("_SYSTEMD_UNIT", args.unit)
        + field("SYSLOG_IDENTIFIER", args.identifier)
        + field("_COMM", args.identifier)
        + field("_PID", args.pid)
        + field("_HOSTNAME", host)
        + field("_MACHINE_ID", machine)
        + field("_BOOT_ID", boot)
    )
    for raw in sys.stdin.buffer:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if not line:
            continue
        entry = (
            field("__REALTIME_TIMESTAMP", str(time.time_ns() // 1000))
            + field("__MONOTONIC_TIMESTAMP", str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))
            + fixed
            + field("PRIORITY", SEVERITY.get(line[:1], "6"))
            + field("MESSAGE", line)
            + b"\n"
        )
        out.write(entry)
        out.flush()


if __name__ == "__main__":
    main()
