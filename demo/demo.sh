#!/bin/bash
# make demo: dray's main job on this machine with no network. A private drayd (its own data and
# exec roots), a busybox image built from Debian's busybox-static, a foreground `run --rm`, a
# detached container with its logs, then drayd stops. Usage: demo.sh RELEASE_DIR WORK_DIR
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

"$bin/drayd" --data-root "$work/data" --exec-root "$work/run" 2>"$work/drayd.log" &
drayd=$!
stop() {
    "$bin/drayctl" rm -f demo-ticker >/dev/null 2>&1 || true
    kill "$drayd" 2>/dev/null && wait "$drayd" 2>/dev/null || true
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
show ps -a
show rm demo-ticker
echo "+ drayd stops (its log: $work/drayd.log)"
