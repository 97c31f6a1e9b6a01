#!/bin/bash
# make demo: dray's main job on this machine with no network. A private drayd (its own data and
# exec roots, and a network namespace of its own, so that its bridges and rules stay off the
# host's network), a busybox image built from Debian's busybox-static, a foreground
# `run --rm`, a detached container with its logs, a web server published on a port and found
# by name on a user-defined network, then drayd stops. Usage: demo.sh RELEASE_DIR WORK_DIR
set -euo pipefail
bin=$(cd "$1" && pwd)
work=$2
rm -rf "$work" && mkdir -p "$work"
work=$(cd "$work" && pwd)
export DRAY_HOST="unix://$work/run/drayd.sock"
# The shim is found next to drayd, dray on PATH.
export PATH="$bin:$PATH"

tests/fixtures/mkbundle.sh "$work/bundle" "$bin/dray" >/dev/null
tar -C "$work/bundle/rootfs" -cf "$work/busybox.tar" .

netns="dray-demo-$$"
ip netns add "$netns"
ip -n "$netns" link set lo up
nsenter --net="/run/netns/$netns" -- "$bin/drayd" --data-root "$work/data" --exec-root "$work/run" 2>"$work/drayd.log" &
drayd=$!
stop() {
    "$bin/drayctl" rm -f demo-ticker demo-web >/dev/null 2>&1 || true
    "$bin/drayctl" network rm demo-net >/dev/null 2>&1 || true
    kill "$drayd" 2>/dev/null && wait "$drayd" 2>/dev/null || true
    ip netns delete "$netns" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 100); do [ -S "$work/run/drayd.sock" ] && break; sleep 0.05; done

show() { echo "+ drayctl $*"; "$bin/drayctl" "$@"; }
show import -c 'CMD ["sh"]' "$work/busybox.tar" busybox
show images
show run --rm busybox sh -c 'echo "hello from $(hostname), pid $$, $(id)"'
show run -d --name demo-ticker busybox sh -c 'for i in 1 2 3; do echo tick $i; sleep 0.2; done'
show wait demo-ticker
show logs demo-ticker
show rm demo-ticker
mkdir -p "$work/www" && echo "hello from a container's web server" > "$work/www/index.html"
show network create demo-net
show run -d --name demo-web --network demo-net -p 8080:80 -v "$work/www:/www:ro" busybox httpd -f -p 80 -h /www
show ps
echo "+ curl http://127.0.0.1:8080/   (in drayd's network namespace)"
for _ in $(seq 50); do nsenter --net="/run/netns/$netns" -- curl -s http://127.0.0.1:8080/ && break; sleep 0.1; done
show run --rm --network demo-net busybox wget -qO- http://demo-web/
show rm -f demo-web
show network rm demo-net
echo "+ drayd stops (its log: $work/drayd.log)"
