# Sourced by scripts/elasticsearch.sh: the cluster commands (cluster-start, cluster-stop,
# cluster-status, cluster-wipe, kill-node, start-node). Uses the instance globals and
# helpers of that script (select_node repoints them at one node).
# shellcheck shell=bash
#
# Cluster mode (the cluster-* commands, kill-node, start-node):
#   ES_PORT           HTTP port of node 1 (default 9201 for these commands, so the cluster
#                     never takes the single node's 9200); node N listens on ES_PORT+N-1,
#                     its transport on ES_PORT+N-1+100. Default: 9201-9203, transport
#                     9301-9303.
#   ES_CLUSTER_NODES  how many nodes (default 3)
#   Each node is an ordinary instance (scripts/elasticsearch.sh, "Cache layout":
#   instances/<its port>/, own data, logs and pid file; ES_HEAP each, 3 x 512m by default). The nodes form ONE
#   cluster: `cluster.name: klg-cluster-<ES_PORT>`, `discovery.seed_hosts` = the nodes'
#   transport ports, `node.name: klg-<port>`, and, until the cluster has formed once
#   (instances/<ES_PORT>.cluster-formed; cluster-wipe deletes it),
#   `cluster.initial_master_nodes` = every node's name.
#   All nodes are master-eligible data nodes: any one can die and the other two still
#   elect a master (a majority of three). No `discovery.type: single-node`. Security
#   is off (ES_SECURE is refused here): plain HTTP and plain transport between the
#   nodes, on loopback only. The nodes start side by side: a lone first node would wait
#   (discovery.initial_state_timeout) for a master that needs two votes.
#   `start`, `stop`, `status`, `wipe`, `logs` with ES_PORT=<a node's port> also work on
#   one node of a cluster, but `start` that way starts it as a single-node cluster:
#   use `start-node N` instead.
#

# Points the instance globals (ES_PORT, INST, URL, ...) at node $1 (1-based).
select_node() {
  ES_PORT=$((CLUSTER_FIRST_PORT + $1 - 1))
  TRANSPORT_PORT=$((ES_PORT + 100))
  INST="$CACHE_DIR/instances/$ES_PORT"
  PID_FILE="$INST/es.pid"
  set_url plain
}

node_arg() {
  [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] && (($1 <= ES_CLUSTER_NODES)) ||
    die "expected a node number between 1 and $ES_CLUSTER_NODES (got '${1:-}')"
}

# The health of the cluster, asked of the first node that answers; $1: query string.
cluster_health() {
  local i body
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    body="$(curl -s -m 70 "http://127.0.0.1:$((CLUSTER_FIRST_PORT + i - 1))/_cluster/health?$1" 2>/dev/null || true)"
    [[ "$body" == *'"status"'* ]] && { echo "$body"; return 0; }
  done
  return 1
}

# Waits until the cluster has $1 nodes and is at least yellow, for up to $2 seconds.
wait_cluster() {
  local nodes="$1" deadline=$((SECONDS + $2)) body
  while ((SECONDS < deadline)); do
    body="$(cluster_health "wait_for_nodes=$nodes&wait_for_status=yellow&timeout=5s" || true)"
    [[ "$body" =~ \"status\":\"(green|yellow)\" && "$body" =~ \"number_of_nodes\":$nodes, ]] && return 0
    sleep 1
  done
  log "cluster health after $2 s: ${body:-no node answers}"
  return 1
}

cluster_start() {
  requested_secure && die "cluster mode is plain HTTP only (ES_SECURE is not supported here)"
  local i pids=() failed=0 t0=$SECONDS
  # In parallel: a first node alone cannot elect a master (it needs a majority).
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    (select_node "$i" && with_lock "$INST.lock" do_start) &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  ((failed == 0)) || die "a node did not start (logs: ES_PORT=<its port> $0 logs)"
  wait_cluster "$ES_CLUSTER_NODES" "$START_TIMEOUT" ||
    die "the cluster did not reach $ES_CLUSTER_NODES nodes, yellow or green"
  touch "$(cluster_formed_marker)"
  log "cluster klg-cluster-$CLUSTER_FIRST_PORT: $ES_CLUSTER_NODES nodes on http://127.0.0.1:$CLUSTER_FIRST_PORT..$((CLUSTER_FIRST_PORT + ES_CLUSTER_NODES - 1)) in $((SECONDS - t0)) s"
}

cluster_stop() {
  local i pids=()
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    (select_node "$i" && with_lock "$INST.lock" do_stop) &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
}

cluster_status() {
  local i rc=0 health
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    select_node "$i"
    printf 'node %d: ' "$i"
    do_status >/dev/null && echo "running on $URL (pid $(instance_pid))" || { echo "stopped (port $ES_PORT)"; rc=3; }
  done
  health="$(cluster_health "filter_path=cluster_name,status,number_of_nodes,active_shards,unassigned_shards" || true)"
  echo "health: ${health:-no node answers}"
  return "$rc"
}

cluster_wipe() {
  local i
  cluster_stop
  for ((i = 1; i <= ES_CLUSTER_NODES; i++)); do
    select_node "$i"
    rm -rf "$INST/data"
    log "deleted $INST/data"
  done
  rm -f "$(cluster_formed_marker)"
}

kill_node() {
  node_arg "$1"
  select_node "$1"
  local pid
  pid="$(instance_pid)"
  [[ -n "$pid" ]] || { log "node $1 (port $ES_PORT) is not running"; return 0; }
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  log "killed node $1 (port $ES_PORT, pid $pid) with SIGKILL"
}

start_node() {
  node_arg "$1"
  select_node "$1"
  with_lock "$INST.lock" do_start
  local nodes
  nodes="$(cluster_health "filter_path=status,number_of_nodes" || true)"
  nodes="${nodes##*\"number_of_nodes\":}"
  nodes="${nodes%%[!0-9]*}"
  log "node $1 is up; the cluster has ${nodes:-?} nodes"
}
