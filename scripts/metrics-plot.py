#!/usr/bin/env python3
"""Sample the gateway's own /metrics during a run, and draw what happened.

    scripts/metrics-plot.py sample --admin http://127.0.0.1:29464 --out run.csv \
        [--es-pid PID] [--interval 1] [--duration 120]
    scripts/metrics-plot.py plot run.csv --out docs/img/run.png --title "..."

`sample` polls /metrics (OpenMetrics text) every --interval seconds until --duration
or SIGINT/SIGTERM and writes one CSV row per sample: time, the counters and gauges the
panels use, and Elasticsearch's CPU seconds (from /proc/PID/stat, when --es-pid is
given). `plot` draws five panels from it: audit events accepted/s, documents indexed/s
(created + duplicate), spool bytes, retries/s (bulk failures + per-item retries), and
Elasticsearch CPU (cores). The same panels, on the same metric names, are the Grafana
dashboard in docs/grafana-dashboard.json.

matplotlib is needed only for `plot`; scripts/bench-*.sh install it in a venv.
"""

import argparse
import csv
import os
import signal
import sys
import time
import urllib.request

COLUMNS = [
    "t",
    "accepted",
    "created",
    "duplicate",
    "dead_lettered",
    "retried",
    "bulk_errors",
    "spool_bytes",
    "spool_entries",
    "es_cpu_seconds",
]


def parse_metrics(text):
    """{(name, labels-string): value} from OpenMetrics text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        if "{" in name_labels:
            name, _, labels = name_labels.partition("{")
            labels = labels.rstrip("}")
        else:
            name, labels = name_labels, ""
        try:
            out[(name, labels)] = float(value)
        except ValueError:
            pass
    return out


def total(metrics, name, **want):
    """Sum of `name` over the series whose labels include every key=value in `want`."""
    s = 0.0
    for (n, labels), v in metrics.items():
        if n != name:
            continue
        if all(f'{k}="{val}"' in labels for k, val in want.items()):
            s += v
    return s


def cpu_seconds(pid):
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat; after the ")" split they are 11 and 12.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def sample(args):
    stop = {"now": False}

    def on_signal(*_):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    start = time.monotonic()
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        while not stop["now"] and (args.duration <= 0 or time.monotonic() - start < args.duration):
            t = time.monotonic() - start
            try:
                with urllib.request.urlopen(args.admin.rstrip("/") + "/metrics", timeout=2) as r:
                    m = parse_metrics(r.read().decode())
            except OSError:
                m = None
            if m is not None:
                w.writerow([
                    f"{t:.2f}",
                    total(m, "klg_audit_events_total", result="accepted"),
                    total(m, "klg_documents_total", outcome="created"),
                    total(m, "klg_documents_total", outcome="duplicate"),
                    total(m, "klg_documents_total", outcome="dead_lettered"),
                    total(m, "klg_documents_total", outcome="retried"),
                    total(m, "klg_bulk_requests_total") - total(m, "klg_bulk_requests_total", result="ok"),
                    total(m, "klg_spool_bytes"),
                    total(m, "klg_spool_entries"),
                    f"{cpu_seconds(args.es_pid):.2f}",
                ])
                f.flush()
            time.sleep(args.interval)


def rate(ts, values):
    out = [0.0]
    for i in range(1, len(ts)):
        dt = ts[i] - ts[i - 1]
        out.append(max(0.0, (values[i] - values[i - 1]) / dt) if dt > 0 else 0.0)
    return out


def plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(args.csv)))
    if len(rows) < 2:
        sys.exit(f"{args.csv}: fewer than two samples")
    col = lambda k: [float(r[k]) for r in rows]  # noqa: E731
    t = col("t")
    panels = [
        ("audit events accepted / s", rate(t, col("accepted")), "events/s"),
        ("documents indexed / s (created + duplicate)",
         rate(t, [a + b for a, b in zip(col("created"), col("duplicate"))]), "documents/s"),
        ("spool", [b / 2**20 for b in col("spool_bytes")], "MiB"),
        ("retries / s (failed bulk requests + items resent)",
         rate(t, [a + b for a, b in zip(col("bulk_errors"), col("retried"))]), "per s"),
        ("Elasticsearch CPU", rate(t, col("es_cpu_seconds")), "cores"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.1 * len(panels)), sharex=True)
    for ax, (title, ys, unit) in zip(axes, panels):
        ax.plot(t, ys, linewidth=1.4)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel(unit, fontsize=8)
        ax.grid(alpha=0.3)
        for start, end in args.shade or []:
            ax.axvspan(start, end, color="tab:red", alpha=0.12)
    axes[-1].set_xlabel("seconds since the start of the run")
    if args.title:
        fig.suptitle(args.title, fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--admin", required=True, help="the gateway's admin URL, e.g. http://127.0.0.1:29464")
    s.add_argument("--out", required=True)
    s.add_argument("--es-pid", type=int, default=0)
    s.add_argument("--interval", type=float, default=1.0)
    s.add_argument("--duration", type=float, default=0, help="seconds; 0 = until SIGINT/SIGTERM")
    s.set_defaults(func=sample)
    d = sub.add_parser("plot")
    d.add_argument("csv")
    d.add_argument("--out", required=True)
    d.add_argument("--title", default="")
    d.add_argument("--shade", type=lambda v: tuple(float(x) for x in v.split(":")), action="append",
                   help="START:END seconds to shade (e.g. the outage); repeatable")
    d.set_defaults(func=plot)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
