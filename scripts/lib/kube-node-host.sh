# Sourced by scripts/kube-node.sh: what the node does to the host outside its own
# directory, and how it is put back: the pod bridge (setup_bridge, teardown_bridge),
# the node's address (node_ip), and the host state recorded before the node changes it
# (record_host_state, restore_host_state). Uses NODE_DIR and the log helper of that script.
# shellcheck shell=bash

# The pod bridge, made before the CNI plugin would make it, so that pods can reach the
# host's loopback-only services (the shared Elasticsearch) at the bridge address:
# 10.244.0.1:<port> is DNATed to 127.0.0.1:<port> for HOST_PORTS_FOR_PODS, and
# route_localnet is set on this bridge alone. Nothing outside this machine is reachable
# through it; stop removes the bridge and the rules.
HOST_PORTS_FOR_PODS="${KLG_NODE_HOST_PORTS:-9200}"
setup_bridge() {
  if ! ip link show klg0 >/dev/null 2>&1; then
    ip link add klg0 type bridge
    ip addr add 10.244.0.1/24 dev klg0
  fi
  ip link set klg0 up
  sysctl -qw net.ipv4.conf.klg0.route_localnet=1
  local port
  for port in $HOST_PORTS_FOR_PODS; do
    iptables -t nat -C PREROUTING -i klg0 -d 10.244.0.1 -p tcp --dport "$port" -j DNAT --to-destination "127.0.0.1:$port" 2>/dev/null ||
      iptables -t nat -A PREROUTING -i klg0 -d 10.244.0.1 -p tcp --dport "$port" -j DNAT --to-destination "127.0.0.1:$port"
  done
}

teardown_bridge() {
  local port
  for port in $HOST_PORTS_FOR_PODS; do
    while iptables -t nat -D PREROUTING -i klg0 -d 10.244.0.1 -p tcp --dport "$port" -j DNAT --to-destination "127.0.0.1:$port" 2>/dev/null; do :; done
  done
  ip link del klg0 2>/dev/null || true
}

node_ip() { ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p'; }

# What the node changes on the host outside NODE_DIR, recorded before it changes it
# (once: a second start of a running node keeps the first record), and put back by stop:
# the kernel settings kubelet, kube-proxy and the bridge plugin set, and the directories
# kubelet, containerd and the CNI plugins create that did not exist before.
HOST_SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes)
HOST_DIRS=(/var/log/pods /var/log/containers /var/lib/cni /run/netns /var/lib/kubelet /run/containerd
  /var/lib/containerd /opt/containerd /etc/cni)
record_host_state() {
  local f="$NODE_DIR/host-state" k v d
  [[ -f "$f" ]] && return 0
  {
    for k in "${HOST_SYSCTLS[@]}"; do
      v="$(sysctl -n "$k" 2>/dev/null)" && printf 'sysctl %s %s\n' "$k" "$v"
    done
    for d in "${HOST_DIRS[@]}"; do
      [[ -e "$d" ]] || printf 'created %s\n' "$d"
    done
    # libmount's runtime directory (the first mount makes it): removed only if empty.
    [[ -e /run/mount ]] || printf 'created-empty /run/mount\n'

  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

restore_host_state() {
  local f="$NODE_DIR/host-state" kind k v
  [[ -f "$f" ]] || return 0
  while read -r kind k v; do
    case "$kind" in
      sysctl) [[ "$(sysctl -n "$k" 2>/dev/null)" == "$v" ]] || sysctl -qw "$k=$v" 2>/dev/null || log "could not set $k back to $v" ;;
      created)
        # Network namespaces of pods whose teardown did not run are bind mounts here.
        { grep -F " $k/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do
          umount -l "$m" 2>/dev/null || true
        done
        rm -rf "$k"
        ;;
      created-empty) rmdir "$k" 2>/dev/null || true ;;
    esac
  done <"$f"
  rm -f "$f"
}
