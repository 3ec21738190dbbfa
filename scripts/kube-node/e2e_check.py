#!/usr/bin/env python3
"""The assertions of scripts/node-e2e.sh, against the real Elasticsearch.

    e2e_check.py containers --es URL --index PATTERN --expect FILE [--timeout S]
    e2e_check.py audit --es URL --index PATTERN --audit-log FILE --since RFC3339 [--timeout S]
    e2e_check.py journal --es URL --index PATTERN --journal-dir DIR [--timeout S]

Each waits (polling, up to --timeout seconds) until what must hold holds, then prints one
summary line and exits 0; on timeout it prints what differs and exits 1.

containers: FILE is a JSON list of {"pod", "namespace", "lines", "labels", "owner":
  {"kind", "name"}, "image"}. Every pod printed "e2e <pod> <i> ..." for i in 1..lines and
  "e2e <pod> done". Each of those lines must be in Elasticsearch exactly once, with the
  pod's labels, its Deployment or Job, and its image, as the API has them.
audit: every (auditID, stage) kube-apiserver wrote to --audit-log with a stageTimestamp at
  or after --since is in Elasticsearch; none is there twice; none that the log lacks.
journal: the journal files under DIR (kubelet's and containerd's lines) are in
  Elasticsearch: at least as many documents as the journal had entries when the check
  began, never more than it has when it ends (each document's _id is its journal cursor,
  so a second copy would be an extra document).
"""

import argparse
import collections
import json
import subprocess
import sys
import time
import urllib.request


def es(url, path, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method or ("POST" if data else "GET"))
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def all_docs(url, index, fields):
    """Every document of the index pattern (only `fields` of _source), by scrolling."""
    try:
        es(url, f"/{index}/_refresh?ignore_unavailable=true&allow_no_indices=true", None, "POST")
    except Exception:
        pass
    out = []
    page = es(
        url,
        f"/{index}/_search?scroll=1m&ignore_unavailable=true&allow_no_indices=true",
        {"size": 5000, "sort": ["_doc"], "_source": fields, "query": {"match_all": {}}},
    )
    sid = page.get("_scroll_id")
    try:
        while page["hits"]["hits"]:
            out.extend(h["_source"] for h in page["hits"]["hits"])
            page = es(url, "/_search/scroll", {"scroll": "1m", "scroll_id": sid})
            sid = page.get("_scroll_id", sid)
    finally:
        if sid:
            try:
                es(url, "/_search/scroll", {"scroll_id": sid}, "DELETE")
            except Exception:
                pass
    return out


def get(d, dotted):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def poll(timeout, check):
    """Run check() until it returns (True, summary) or timeout; print and exit."""
    deadline = time.time() + timeout
    while True:
        ok, text = check()
        if ok:
            print(text)
            return
        if time.time() > deadline:
            print(f"e2e_check: FAILED after {timeout} s:\n{text}", file=sys.stderr)
            sys.exit(1)
        time.sleep(2)


def containers(args):
    expect = json.load(open(args.expect))
    owner_field = {"Deployment": "kubernetes.deployment.name", "Job": "kubernetes.job.name"}

    def check():
        docs = all_docs(
            args.es,
            args.index,
            ["message", "kubernetes.pod.name", "kubernetes.namespace", "kubernetes.labels",
             "kubernetes.deployment.name", "kubernetes.job.name", "container.image.name"],
        )
        by_pod = collections.defaultdict(list)
        for d in docs:
            by_pod[get(d, "kubernetes.pod.name")].append(d)
        problems, total = [], 0
        for e in expect:
            pod, n = e["pod"], e["lines"]
            got = by_pod.get(pod, [])
            seen = collections.Counter()
            for d in got:
                words = (d.get("message") or "").split()
                if len(words) >= 3 and words[0] == "e2e" and words[1] == pod:
                    seen[words[2]] += 1
                else:
                    problems.append(f"{pod}: unexpected message {d.get('message')!r}")
                    continue
                if get(d, "kubernetes.namespace") != e["namespace"]:
                    problems.append(f"{pod}: namespace {get(d, 'kubernetes.namespace')!r}")
                labels = get(d, "kubernetes.labels") or {}
                for k, v in e["labels"].items():
                    if labels.get(k) != v:
                        problems.append(f"{pod}: label {k}={labels.get(k)!r}, expected {v!r}")
                field = owner_field[e["owner"]["kind"]]
                if get(d, field) != e["owner"]["name"]:
                    problems.append(f"{pod}: {field}={get(d, field)!r}, expected {e['owner']['name']!r}")
                if get(d, "container.image.name") != e["image"]:
                    problems.append(f"{pod}: container.image.name={get(d, 'container.image.name')!r}, expected {e['image']!r}")
            wanted = {str(i) for i in range(1, n + 1)} | {"done"}
            missing = sorted(wanted - set(seen), key=lambda s: (len(s), s))
            twice = sorted(k for k, c in seen.items() if c > 1)
            extra = sorted(set(seen) - wanted)
            if missing:
                problems.append(f"{pod}: {len(missing)} of {len(wanted)} lines missing, e.g. {missing[:5]}")
            if twice:
                problems.append(f"{pod}: {len(twice)} lines stored more than once, e.g. {twice[:5]}")
            if extra:
                problems.append(f"{pod}: lines that were never printed: {extra[:5]}")
            total += len(got)
        summary = f"containers: {len(expect)} pods, {total} lines, each exactly once with labels, owner and image"
        # Deduplicate repeated problems (one per document) for a readable report.
        return not problems, summary if not problems else "\n".join(sorted(set(problems))[:40])

    poll(args.timeout, check)


def audit(args):
    def log_pairs(since):
        pairs = set()
        with open(args.audit_log) as f:
            for line in f:
                if not line.strip():
                    continue
                ev = json.loads(line)
                if since is None or ev["stageTimestamp"] >= since:
                    pairs.add((ev["auditID"], ev["stage"]))
        return pairs

    wanted = log_pairs(args.since)
    if not wanted:
        print("e2e_check: no audit events in the log since " + args.since, file=sys.stderr)
        sys.exit(1)

    def check():
        docs = all_docs(args.es, args.index, ["kubernetes.audit.auditID", "kubernetes.audit.stage"])
        got = collections.Counter((get(d, "kubernetes.audit.auditID"), get(d, "kubernetes.audit.stage")) for d in docs)
        missing = wanted - set(got)
        twice = [p for p, c in got.items() if c > 1]
        invented = set(got) - log_pairs(None)
        problems = []
        if missing:
            problems.append(f"{len(missing)} of {len(wanted)} audit events missing, e.g. {sorted(missing)[:3]}")
        if twice:
            problems.append(f"{len(twice)} audit events stored more than once, e.g. {twice[:3]}")
        if invented:
            problems.append(f"{len(invented)} stored audit events are not in the audit log, e.g. {sorted(invented)[:3]}")
        summary = (f"audit: all {len(wanted)} events logged since {args.since} are in Elasticsearch "
                   f"({len(got)} stored in all, none twice, none unknown to the audit log)")
        return not problems, summary if not problems else "\n".join(problems)

    poll(args.timeout, check)


def journal_entries(d):
    # The units the node role ships (the chart's node.journaldUnits).
    units = ["_SYSTEMD_UNIT=kubelet.service", "+", "_SYSTEMD_UNIT=containerd.service"]
    out = subprocess.run(["journalctl", "--directory", d, "-o", "export", "--no-pager", *units],
                         capture_output=True, check=True).stdout
    return sum(1 for line in out.split(b"\n") if line.startswith(b"__CURSOR="))


def journal(args):
    at_start = journal_entries(args.journal_dir)
    if at_start == 0:
        print(f"e2e_check: no journal entries in {args.journal_dir}", file=sys.stderr)
        sys.exit(1)

    def check():
        stored = len(all_docs(args.es, args.index, ["systemd.unit"]))
        now = journal_entries(args.journal_dir)
        ok = at_start <= stored <= now
        summary = (f"journal: {stored} kubelet/containerd entries in Elasticsearch; the journal had "
                   f"{at_start} when the check began and {now} now")
        return ok, summary

    poll(args.timeout, check)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("containers", "audit", "journal"):
        s = sub.add_parser(name)
        s.add_argument("--es", required=True)
        s.add_argument("--index", required=True)
        s.add_argument("--timeout", type=int, default=180)
    sub.choices["containers"].add_argument("--expect", required=True)
    sub.choices["audit"].add_argument("--audit-log", required=True)
    sub.choices["audit"].add_argument("--since", required=True)
    sub.choices["journal"].add_argument("--journal-dir", required=True)
    args = p.parse_args()
    {"containers": containers, "audit": audit, "journal": journal}[args.cmd](args)


if __name__ == "__main__":
    main()
