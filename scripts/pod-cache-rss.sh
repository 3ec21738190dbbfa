#!/usr/bin/env bash
# RSS of the node role's pod metadata cache with 10,000 pods on its node (docs/benchmarks.md):
# a kube-apiserver of its own (scripts/kube-apiserver.sh, KUBE_DIR under $R), the gateway
# binary (BIN, default the debug build) on Elasticsearch at 127.0.0.1:9200, VmRSS before
# and after the pods are cached. Usage: cargo build --bin kube-log-gateway && scripts/pod-cache-rss.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
R="${R:-$(mktemp -d)}"; BIN="${BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/kube-log-gateway}"
export KUBE_DIR=$R/kube
bash $REPO/scripts/kube-apiserver.sh start >/dev/null
source $KUBE_DIR/env
export KUBECONFIG
mkdir -p $R/log $R/data
$KUBECTL apply -f - >/dev/null <<Y
{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"load","labels":{"team":"payments"}}}
Y
$KUBECTL apply -f - >/dev/null <<Y
{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default","namespace":"load"}}
Y
cat > $R/gw.yaml <<Y
cluster_name: rss
node_name: node-a
data_dir: $R/data
admin: {listen: 127.0.0.1:19464}
sources:
  containers:
    paths: ["$R/log/*.log"]
    kubernetes: {enabled: true, kubeconfig: "$KUBECONFIG"}
elasticsearch:
  urls: ["http://127.0.0.1:9200"]
  indices: {containers: "rss-containers-%Y.%m.%d", dead_letter: "rss-deadletter-%Y.%m.%d"}
Y
$BIN serve --config $R/gw.yaml > $R/gw.log 2>&1 &
GW=$!
sleep 5
rss() { awk '/VmRSS/{print $2}' /proc/$GW/status; }
echo "rss_kib_0_pods=$(rss)"
python3 - > $R/pods.json <<P
import json
items=[{"apiVersion":"v1","kind":"Pod","metadata":{"name":f"load-{i:05d}","namespace":"load",
  "labels":{"app":f"app-{i%50}","app.kubernetes.io/name":f"app-{i%50}","app.kubernetes.io/instance":f"inst-{i}","pod-template-hash":"5d9f8c7b6"},
  "annotations":{"example.com/owner":"team-payments"}},
  "spec":{"nodeName":"node-a","containers":[{"name":"app","image":f"registry.example/app-{i%50}:1.2.3"}]}} for i in range(10000)]
print(json.dumps({"apiVersion":"v1","kind":"List","items":items}))
P
t0=$SECONDS
$KUBECTL create -f $R/pods.json >/dev/null
echo "created_in_s=$((SECONDS-t0))"
for i in $(seq 1 120); do
  n=$(curl -s 127.0.0.1:19464/metrics | awk '/^klg_containers_kube_pods_cached /{print $2}')
  [[ "$n" == 10000 ]] && break; sleep 1
done
echo "pods_cached=$n"
sleep 5
echo "rss_kib_10000_pods=$(rss)"
echo "loadavg=$(cat /proc/loadavg)"
kill $GW; wait $GW || true
bash $REPO/scripts/kube-apiserver.sh stop >/dev/null
curl -s -XDELETE 'http://127.0.0.1:9200/rss-*' >/dev/null
