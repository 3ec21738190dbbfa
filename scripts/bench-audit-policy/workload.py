#!/usr/bin/env python3
"""A busy cluster's API traffic, for a fixed time, against one kube-apiserver.

    workload.py SECONDS   (KUBE_URL, KUBE_CA, KUBE_ADMIN_TOKEN from scripts/kube-apiserver.sh env)

What a busy cluster's API servers mostly see, in one loop: controllers and the
scheduler reading and writing pods and their status, kubelets and controllers
reporting Events (the bulk of writes on a busy cluster), leases renewed, config
and secrets read, and now and then what people do: a Deployment rolled, an exec
into a pod, an ephemeral container, a CSR, Events deleted. Each request is one
HTTP call; the request count is printed as JSON on stdout, so that audit events
per request can be compared between policies.
"""

import http.client
import json
import os
import socket
import ssl
import sys
import time
import urllib.parse

URL = urllib.parse.urlparse(os.environ["KUBE_URL"])
CTX = ssl.create_default_context(cafile=os.environ["KUBE_CA"])
TOKEN = os.environ["KUBE_ADMIN_TOKEN"]
NS = "bench"
requests = {"total": 0, "failed": 0}
# One kept-alive connection, as a controller's client keeps one.
conn = http.client.HTTPSConnection(URL.hostname, URL.port, context=CTX, timeout=30)
conn.connect()
# Headers and body go out as two writes: without this, each one waits on a delayed ACK.
conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def call(method, path, body=None, content_type="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = content_type
    requests["total"] += 1
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    if resp.status >= 400:
        requests["failed"] += 1
        return None
    return json.loads(payload or b"{}")


def pod(name):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "checkout"}},
        "spec": {"automountServiceAccountToken": False,
                 "containers": [{"name": "app", "image": "registry.example/checkout:1.4.2"}]},
    }


def event(name, i):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name},
        "eventTime": now,
        "reportingController": "kubelet",
        "reportingInstance": "node-1",
        "action": "Pulling",
        "reason": "Pulling",
        "type": "Normal",
        "note": f"Pulling image registry.example/checkout:1.4.{i}",
        "regarding": {"kind": "Pod", "namespace": NS, "name": "checkout-0", "apiVersion": "v1"},
    }


def main():
    seconds = float(sys.argv[1])
    call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    # No controller-manager here: the namespace's default ServiceAccount is made by hand,
    # or every pod create would wait for it and fail.
    for sa in ("default", "builder"):
        call("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": sa}})
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1"},
             "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}
    call("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases", lease)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        name = f"checkout-{i}"
        # Controllers and the scheduler: a pod made, read, its status written, listed, deleted.
        call("POST", f"/api/v1/namespaces/{NS}/pods", pod(name))
        call("GET", f"/api/v1/namespaces/{NS}/pods/{name}")
        call("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}/status",
             {"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}},
             "application/merge-patch+json")
        call("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dcheckout&limit=50")
        # Kubelets and controllers: Events, several per pod.
        for k in range(4):
            call("POST", f"/apis/events.k8s.io/v1/namespaces/{NS}/events", event(f"{name}.{k}", i))
        # Leases and config reads.
        call("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/node-1")
        call("GET", f"/api/v1/namespaces/{NS}/configmaps")
        call("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}?gracePeriodSeconds=0")
        if i % 10 == 0:
            # People: a Deployment rolled, an exec attempt, an ephemeral container,
            # a token, a CSR.
            dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"web-{i}"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
            call("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", dep)
            call("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web-{i}",
                 {"spec": {"replicas": 3}}, "application/merge-patch+json")
            call("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/web-{i}")
            call("POST", f"/api/v1/namespaces/{NS}/pods", pod(f"debug-{i}"))
            call("POST", f"/api/v1/namespaces/{NS}/pods/debug-{i}/exec?command=sh&stdout=true&container=app")
            call("PATCH", f"/api/v1/namespaces/{NS}/pods/debug-{i}/ephemeralcontainers",
                 {"spec": {"ephemeralContainers": [{"name": "dbg", "image": "busybox:1.36",
                                                    "command": ["sh"]}]}},
                 "application/strategic-merge-patch+json")
            call("DELETE", f"/api/v1/namespaces/{NS}/pods/debug-{i}?gracePeriodSeconds=0")
            call("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/builder/token",
                 {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
        if i % 50 == 0:
            # Someone clears the namespace's Events.
            call("DELETE", f"/apis/events.k8s.io/v1/namespaces/{NS}/events")
    print(json.dumps(requests))


if __name__ == "__main__":
    main()
