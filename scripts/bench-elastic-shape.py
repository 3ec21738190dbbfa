#!/usr/bin/env python3
"""Elasticsearch's cost per audit document, before and after the Elastic-native
shape, side by side in one run (docs/benchmarks.md, "Elastic-native audit documents").

    python3 scripts/bench-elastic-shape.py [--docs N] [--reps R] BEFORE AFTER [AFTER...]

BEFORE / AFTER: index templates the gateway installed, before the Elastic-native shape
and after it (one or more, e.g. two versions of it): a template name on $ES_URL (default
http://127.0.0.1:9200), or `@file.json` holding the body of `GET /_index_template/<name>`
or the template itself. Their mappings and settings are copied to indices of this
script's own (`bench-shape-0`, `bench-shape-1`, …, deleted first and at the end).
BEFORE gets documents in the shape before, every AFTER the Elastic-native shape.

Each repetition: a warm-up (10,000 documents per template into a scratch index, not
counted), then N (default 100000) Metadata-level audit documents per template,
bulk-loaded in rounds of one batch of 1000 per template, the order rotating every
round, so every template sees the same load on the machine. Reported per document and
as a ratio to BEFORE:

* write-thread CPU: the time Elasticsearch's `write` threads (where bulk requests are
  indexed) spent on a CPU during each template's bulk requests; GC, the JIT, merges and
  refreshes run on other threads and are left out. Read from /proc (the node must run on
  this machine; its threads are named by the JDK's jcmd);
* ES process CPU: the same for every thread of Elasticsearch's JVM (merges and
  refreshes of one index land in another's requests, so it is noisier);
* index time: the index's `indexing.index_time_in_millis` (wall time in the indexing
  threads, which grows with the machine's load);
* store: the store size after a force merge to one segment.
"""
import argparse
import json
import os
import re
import subprocess
import urllib.request

ES = os.environ.get("ES_URL", "http://127.0.0.1:9200")


def call(method, path, body=None, ndjson=False):
    data = None
    headers = {}
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers["content-type"] = "application/x-ndjson" if ndjson else "application/json"
    req = urllib.request.Request(ES + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}")


def doc(i, new):
    """A Metadata-level event as the gateway writes it (get/list/watch traffic)."""
    ns, name = f"ns-{i % 50}", f"pod-{i % 997}"
    user = f"system:serviceaccount:{ns}:sa-{i % 13}"
    ip = f"10.{i % 7}.{i % 251}.{i % 199}"
    ts = f"2026-12-07T05:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}123Z"
    audit = {
        "level": "Metadata", "auditID": f"bench-{i}", "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/{ns}/pods/{name}", "verb": ["get", "list", "watch"][i % 3],
        "user": {"username": user, "uid": f"uid-{i % 13}", "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
                 "extra": {("authentication.kubernetes.io/pod-name" if new else "authentication_kubernetes_io/pod-name"): [f"worker-{i % 31}"]}},
        "sourceIPs": [ip], "userAgent": "kube-controller-manager/v1.36.3 (linux/amd64) kubernetes/abc",
        "objectRef": {"resource": "pods", "namespace": ns, "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": ts, "stageTimestamp": ts,
        "annotations": {"authorization_k8s_io/decision": "allow", "authorization_k8s_io/reason": f"RBAC: allowed by RoleBinding \"r-{i % 13}\""},
    }
    d = {"@timestamp": ts}
    event = {"dataset": "kubernetes.audit_logs" if new else "kubernetes.audit", "kind": "event", "id": f"id-{i}",
             "action": audit["verb"], "outcome": "success"}
    if new:
        d = {"event.ingested": "2026-12-07T05:41:00.000Z", **d,
             "data_stream": {"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": "kube_log_gateway"}}
    else:
        event["ingested"] = "2026-12-07T05:41:00.000Z"
    d["event"] = event
    d["orchestrator"] = {"type": "kubernetes", "cluster": {"name": "prod"}}
    if new:
        d["orchestrator"].update({"namespace": ns, "resource": {"type": "pods", "name": name}, "api_version": "v1"})
    d["host"] = {"name": "gw-0"}
    d["user"] = {"name": user, "id": f"uid-{i % 13}"}
    d["source"] = {"ip": [ip] if new else ip}
    if new:
        d["client"] = {"ip": ip}
        d["related"] = {"user": [user], "ip": [ip]}
    d["user_agent"] = {"original": audit["userAgent"]}
    d["url"] = {"original": audit["requestURI"]}
    d["http"] = {"response": {"status_code": 200}}
    d["kubernetes"] = {"node": {"name": "node-1"}, "audit": audit}
    return d


def template(arg):
    if arg.startswith("@"):
        t = json.load(open(arg[1:]))
    else:
        t = call("GET", f"/_index_template/{arg}")
    if "index_templates" in t:
        t = t["index_templates"][0]["index_template"]
    return t["template"]


class EsCpu:
    """Elasticsearch's CPU time in ms, read from /proc (the node must run on this
    machine): `process()`, every thread of its JVM; `write()`, its `write` threads
    only (where bulk requests are indexed; not merges, refreshes, GC or the JIT),
    found by name with jcmd. Time on CPU from /proc/<pid>/task/<tid>/schedstat
    (nanoseconds). Either is None when it cannot be read."""

    def __init__(self):
        self.pid = next(iter(call("GET", "/_nodes/_local/process")["nodes"].values()))["process"]["id"]
        self.local = os.path.isdir(f"/proc/{self.pid}/task")
        self.writers = []

    def find_write_threads(self):
        """Once the write pool has all its threads (after the warm-up)."""
        if not self.local:
            return
        jcmd = os.path.join(os.path.dirname(os.path.realpath(f"/proc/{self.pid}/exe")), "jcmd")
        try:
            out = subprocess.run([jcmd, str(self.pid), "Thread.print"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            return
        self.writers = [int(m.group(1), 16) for m in re.finditer(r'^"[^"]*\]\[write\]\[[^"]*".* nid=0x([0-9a-f]+)', out, re.M)]

    @staticmethod
    def _ms(tid_dir):
        try:
            return int(open(f"{tid_dir}/schedstat").read().split()[0]) / 1e6
        except OSError:
            return 0.0

    def process(self):
        if not self.local:
            return None
        return sum(self._ms(f"/proc/{self.pid}/task/{t}") for t in os.listdir(f"/proc/{self.pid}/task"))

    def write(self):
        if not self.writers:
            return None
        return sum(self._ms(f"/proc/{self.pid}/task/{t}") for t in self.writers)


def bulk(index, start, end, new, op="create"):
    lines = []
    for i in range(start, end):
        meta = {"_index": index, "_id": f"id-{i}"} if op == "create" else {"_index": index}
        lines.append(json.dumps({op: meta}))
        lines.append(json.dumps(doc(i, new), separators=(",", ":")))
    return "\n".join(lines) + "\n"


def run(templates, n, es_cpu):
    labels = list(range(len(templates)))
    indices = {}
    for label, t in zip(labels, templates):
        index = f"bench-shape-{label}"
        call("DELETE", f"/{index}")
        settings = json.loads(json.dumps(t["settings"]["index"]))
        settings["refresh_interval"] = "30s"
        r = call("PUT", f"/{index}", {"settings": {"index": settings}, "mappings": t["mappings"]})
        assert r.get("acknowledged"), r
        indices[label] = index
    # Warm-up: the JIT compiles the paths both shapes take before anything counts.
    call("DELETE", "/bench-shape-warm")
    for start in range(0, 10000, 1000):
        for label in labels:
            body = bulk("bench-shape-warm", start, start + 1000, label > 0, op="index")
            call("POST", "/_bulk?filter_path=errors", body, ndjson=True)
    call("DELETE", "/bench-shape-warm")
    es_cpu.find_write_threads()
    load_before = open("/proc/loadavg").read().split()[:3]
    cpu = {label: [0.0, 0.0] for label in labels}
    rounds = 0
    for start in range(0, n, 1000):
        order = labels[rounds % len(labels):] + labels[:rounds % len(labels)]
        rounds += 1
        for label in order:
            body = bulk(indices[label], start, min(n, start + 1000), label > 0)
            w0, p0 = es_cpu.write(), es_cpu.process()
            r = call("POST", "/_bulk?filter_path=errors,items.*.error", body, ndjson=True)
            w1, p1 = es_cpu.write(), es_cpu.process()
            assert not r.get("errors"), json.dumps(r)[:500]
            cpu[label][0] = None if w0 is None or cpu[label][0] is None else cpu[label][0] + w1 - w0
            cpu[label][1] = None if p0 is None or cpu[label][1] is None else cpu[label][1] + p1 - p0
    load_after = open("/proc/loadavg").read().split()[:3]
    out = {}
    for label, index in indices.items():
        call("POST", f"/{index}/_refresh")
        call("POST", f"/{index}/_forcemerge?max_num_segments=1")
        s = call("GET", f"/{index}/_stats/indexing,store,docs")["_all"]["primaries"]
        assert s["docs"]["count"] == n, s["docs"]
        w, p = (None if c is None else c * 1000.0 / n for c in cpu[label])
        out[label] = (w, p, s["indexing"]["index_time_in_millis"] * 1000.0 / n, s["store"]["size_in_bytes"] / n)
        call("DELETE", f"/{index}")
    return out, load_before, load_after


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=100000)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("templates", nargs="+", metavar="TEMPLATE")
    a = p.parse_args()
    assert len(a.templates) >= 2, "BEFORE and at least one AFTER"
    templates = [template(t) for t in a.templates]
    names = ["before"] + a.templates[1:]
    es_cpu = EsCpu()
    columns = ["write-thread CPU", "ES process CPU", "index time", "store (1 segment)"]
    print(f"{a.docs} Metadata-level audit documents per template and repetition; before = {a.templates[0]}")
    print("| rep | load average (1/5/15 min), start → end | template | "
          + " | ".join(f"{c} per document" for c in columns) + " | " + " | ".join(f"{c} / before" for c in columns) + " |")
    print("|---" * (3 + 2 * len(columns)) + "|")
    ratios = {label: [] for label in range(1, len(templates))}

    def num(x, unit):
        return "–" if x is None else f"{x:.1f} {unit}" if unit == "µs" else f"{x:.0f} {unit}"

    def ratio(x, y):
        return None if x is None or y is None else x / y

    for rep in range(1, a.reps + 1):
        out, l0, l1 = run(templates, a.docs, es_cpu)
        load = f"{' '.join(l0)} → {' '.join(l1)}"
        base = out[0]
        for label, vals in out.items():
            rs = [ratio(v, b) for v, b in zip(vals, base)]
            cells = [num(v, u) for v, u in zip(vals, ["µs", "µs", "µs", "B"])] + ["–" if r is None else f"{r:.3f}" for r in rs]
            print(f"| {rep} | {load} | {names[label]} | " + " | ".join(cells) + " |", flush=True)
            if label:
                ratios[label].append(rs)
    if a.reps > 1:
        print()
        print("| template | " + " | ".join(f"{c} / before: median (range)" for c in columns) + " |")
        print("|---" * (1 + len(columns)) + "|")
        for label, rs in ratios.items():
            cells = []
            for k in range(len(columns)):
                xs = sorted(r[k] for r in rs if r[k] is not None)
                if not xs:
                    cells.append("–")
                    continue
                m = xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
                cells.append(f"{m:.3f} ({xs[0]:.3f}–{xs[-1]:.3f})")
            print(f"| {names[label]} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
