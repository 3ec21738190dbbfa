#!/usr/bin/env python3
"""Elasticsearch's cost per audit document, before and after the Elastic-native
shape, side by side in one run (docs/benchmarks.md, "Elastic-native audit documents").

    python3 scripts/bench-elastic-shape.py OLD_TEMPLATE NEW_TEMPLATE [DOCS]

OLD_TEMPLATE / NEW_TEMPLATE: names of index templates the gateway installed (before
and after the change) on $ES_URL (default http://127.0.0.1:9200); their mappings and
settings are copied to two indices of its own (`bench-shape-old`, `bench-shape-new`,
deleted first and at the end). DOCS (default 100000) Metadata-level audit documents of
each shape are bulk-loaded in alternating batches of 1000, so both see the same load on
the machine. Reported per document: Elasticsearch's indexing time
(`indexing.index_time_in_millis` of the index, the CPU the indexing threads spent on it)
and the store size after a force merge to one segment.
"""
import json
import sys
import urllib.request

ES = __import__("os").environ.get("ES_URL", "http://127.0.0.1:9200")


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


def main():
    old_t, new_t = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
    indices = {}
    for label, name in (("old", old_t), ("new", new_t)):
        t = call("GET", f"/_index_template/{name}")["index_templates"][0]["index_template"]["template"]
        index = f"bench-shape-{label}"
        call("DELETE", f"/{index}")
        settings = t["settings"]["index"]
        settings["refresh_interval"] = "30s"
        r = call("PUT", f"/{index}", {"settings": {"index": settings}, "mappings": t["mappings"]})
        assert r.get("acknowledged"), r
        indices[label] = index
    for start in range(0, n, 1000):
        for label in ("old", "new"):
            lines = []
            for i in range(start, min(n, start + 1000)):
                lines.append(json.dumps({"create": {"_index": indices[label], "_id": f"id-{i}"}}))
                lines.append(json.dumps(doc(i, label == "new"), separators=(",", ":")))
            r = call("POST", "/_bulk?filter_path=errors,items.*.error", "\n".join(lines) + "\n", ndjson=True)
            assert not r.get("errors"), json.dumps(r)[:500]
    out = {}
    for label, index in indices.items():
        call("POST", f"/{index}/_refresh")
        call("POST", f"/{index}/_forcemerge?max_num_segments=1")
        s = call("GET", f"/{index}/_stats/indexing,store,docs")["_all"]["primaries"]
        assert s["docs"]["count"] == n, s["docs"]
        out[label] = (s["indexing"]["index_time_in_millis"] * 1000.0 / n, s["store"]["size_in_bytes"] / n)
        call("DELETE", f"/{index}")
    load = open("/proc/loadavg").read().split()[:3]
    print(f"{n} Metadata-level audit documents per shape, load average {' '.join(load)}")
    print("| shape | ES indexing time per document | store per document (1 segment) |")
    print("|---|---|---|")
    for label in ("old", "new"):
        print(f"| {label} | {out[label][0]:.1f} µs | {out[label][1]:.0f} B |")
    print(f"| new / old | {out['new'][0] / out['old'][0]:.3f} | {out['new'][1] / out['old'][1]:.3f} |")


if __name__ == "__main__":
    main()
