#!/usr/bin/env python3
"""drayd's container benchmark, side by side in one run with dockerd 20.10, podman 4.3 and
containerd 1.6's `ctr` from Debian, all with the same busybox image (Debian's busybox-static,
written by drayd as a docker-archive and loaded into each engine) and every engine's storage on
one tmpfs. Every engine runs in one network namespace that the bench makes (`ip netns`), so that
their bridges and packet filter rules never touch the host's network:

- `run --rm busybox true` (the whole round trip: create, start, exit, remove) without a network
  (`--network none`), and on each engine's default bridge network (drayd's `bridge` through the
  CNI plugins, dockerd's docker0 with its iptables rules, podman's netavark `podman` network;
  ctr has none);
- `run -d busybox sleep` alone, and its removal (`rm -f`);
- 20 containers started in a row;
- the resident memory (RSS and PSS) of the daemon with its helpers (containerd, shims,
  conmon), idle with the image loaded and with the 20 containers running.

Run through `make bench` (as root), or alone: `python3 bench/containers.py`. BENCH_CTR_RUNS
(default 10) sets the runs of each timed measure; engines alternate within a round.
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from images import BIN, ROOT, Containerd, Daemon, Dockerd, Drayd, Podman, sh, timed, wait_for  # noqa: E402

RUNS = int(os.environ.get("BENCH_CTR_RUNS", "10"))
NETNS = f"dray-bench-{os.getpid()}"
IN_NS = f"nsenter --net=/run/netns/{NETNS} --"


class DraydC(Drayd):
    def start(self):
        os.environ["PATH"] = f"{BIN}:{os.environ['PATH']}"
        self.sock = os.path.join(self.base, "run/drayd.sock")
        self.spawn(IN_NS.split() + [f"{BIN}/drayd", "--data-root", f"{self.base}/data", "--exec-root", f"{self.base}/run"], self.sock)

    def cli(self, args):
        return self.ctl(args)

    def run_rm(self, i):
        return self.cli("run --rm --network none busybox true")

    def run_rm_net(self, i):
        return self.cli("run --rm busybox true")

    def run_d(self, name):
        return self.cli(f"run -d --network none --name {name} busybox sleep 1000 >/dev/null")

    def rm(self, name):
        return self.cli(f"rm -f {name} >/dev/null")


class DockerdC(Dockerd):
    extra = ""

    def start(self):
        # Its default bridge (docker0) and iptables rules, in the bench's namespace.
        self.sock = os.path.join(self.base, "docker.sock")
        self.spawn(IN_NS.split() + ["dockerd", "--data-root", f"{self.base}/data", "--exec-root", f"{self.base}/exec",
                                    "--pidfile", f"{self.base}/pid", "-H", f"unix://{self.sock}", "--ip6tables=false",
                                    "--containerd-namespace", "bench", "--storage-driver", "overlay2"], self.sock)
        wait_for(lambda: subprocess.run(f"docker -H unix://{self.sock} version", shell=True, capture_output=True).returncode == 0, "dockerd")

    def cli(self, args):
        return f"docker -H unix://{self.sock} {args}"

    def run_rm(self, i):
        return self.cli(f"run --rm --network none{self.extra} busybox true")

    def run_rm_net(self, i):
        return self.cli(f"run --rm{self.extra} busybox true")

    def run_d(self, name):
        return self.cli(f"run -d --network none{self.extra} --name {name} busybox sleep 1000 >/dev/null")

    def rm(self, name):
        return self.cli(f"rm -f {name} >/dev/null")

    def load(self, tar):
        return self.cli(f"load -q -i {tar} >/dev/null")


class PodmanC(Podman):
    # podman raises RLIMIT_NOFILE and RLIMIT_NPROC by default, which needs CAP_SYS_RESOURCE
    # (not here); its crun refuses this host's hybrid cgroups, so it runs runc.
    extra = " --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"

    def start(self):
        super().start()
        self.args = f"{IN_NS} {self.args} --runtime runc"

    def cli(self, args):
        return f"{self.args} {args}"

    def run_rm(self, i):
        return self.cli(f"run --rm --network none{self.extra} busybox true")

    def run_rm_net(self, i):
        return self.cli(f"run --rm{self.extra} busybox true")

    def run_d(self, name):
        return self.cli(f"run -d --network none{self.extra} --name {name} busybox sleep 1000 >/dev/null")

    def rm(self, name):
        return self.cli(f"rm -f -t 0 {name} >/dev/null")


class CtrC(Containerd):
    IMAGE = "docker.io/library/busybox:latest"
    # ctr has no default network (it runs containers without one).
    run_rm_net = None

    def cli(self, args):
        return f"ctr -a {self.sock} {args}"

    def run_rm(self, i):
        return self.cli(f"run --rm {self.IMAGE} rm{i}-{time.time_ns()} true")

    def run_d(self, name):
        return self.cli(f"run -d {self.IMAGE} {name} sleep 1000 >/dev/null")

    def rm(self, name):
        return self.cli(f"task kill -s KILL {name} && sleep 0.05; {self.cli(f'task delete -f {name}')} >/dev/null; {self.cli(f'container rm {name}')}")


def memory_kb(base):
    """RSS and PSS (kB) of every process that belongs to an engine: its command line or working
    directory names the engine's directory (daemons, containerd, shims, conmon), minus the
    containers' own processes (they run in other mount namespaces)."""
    own_mnt = os.readlink("/proc/self/ns/mnt")
    rss = pss = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") != own_mnt:
                continue
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if base not in cmd and not cwd.startswith(base):
                continue
            for l in open(f"/proc/{pid}/smaps_rollup"):
                if l.startswith("Rss:"):
                    rss += int(l.split()[1])
                elif l.startswith("Pss:"):
                    pss += int(l.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return rss, pss


def main():
    work = tempfile.mkdtemp(prefix="dray-bench-ctr-")
    store = os.path.join(work, "store")
    os.makedirs(store)
    sh(f"mount -t tmpfs -o size=4g tmpfs {store}")
    sh(f"ip netns add {NETNS} && ip -n {NETNS} link set lo up")
    engines = {}
    try:
        run(store, engines)
    finally:
        # Also after a failure: no daemon of the bench outlives it.
        for e in engines.values():
            try:
                e.stop()
            except Exception:  # noqa: BLE001
                pass
        subprocess.run(f"grep -o ' {store}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l", shell=True)
        subprocess.run(f"ip netns delete {NETNS}", shell=True)
        shutil.rmtree(work, ignore_errors=True)


def run(store, engines):
    # The image: busybox-static as a rootfs, imported by drayd and saved as a docker-archive.
    sh(f"{ROOT}/tests/fixtures/mkbundle.sh {store}/bundle {BIN}/dray >/dev/null")
    sh(f"tar -C {store}/bundle/rootfs -cf {store}/rootfs.tar .")
    d = DraydC("drayd", store)
    engines["drayd"] = d
    d.fresh()
    sh(d.cli(f"import -c 'CMD [\"sh\"]' {store}/rootfs.tar busybox >/dev/null"))
    sh(d.cli(f"save -o {store}/busybox.tar busybox"))
    for name, cls, binary in (("docker", DockerdC, "dockerd"), ("podman", PodmanC, "podman"), ("ctr", CtrC, "containerd")):
        if shutil.which(binary):
            e = cls(name, store)
            engines[name] = e
            e.fresh()
            sh(e.load(f"{store}/busybox.tar"))
    names = list(engines)
    res = {m: {n: [] for n in names} for m in ("run --rm true", "run --rm true, default bridge", "run -d", "rm -f", "20 × run -d")}
    mem = {}
    for n in names:
        e = engines[n]
        # Warm up: the first run pays for lazy set-up in every engine (the bridge's too).
        sh(e.run_rm(0) + " >/dev/null")
        if e.run_rm_net:
            sh(e.run_rm_net(0) + " >/dev/null")
    for r in range(RUNS):
        for n in names[r % len(names):] + names[:r % len(names)]:
            e = engines[n]
            res["run --rm true"][n].append(timed(e.run_rm(r)))
            if e.run_rm_net:
                res["run --rm true, default bridge"][n].append(timed(e.run_rm_net(r)))
            res["run -d"][n].append(timed(e.run_d(f"b{r}")))
            res["rm -f"][n].append(timed(e.rm(f"b{r}")))
    for n in names:
        e = engines[n]
        time.sleep(1)
        mem[(n, "idle")] = memory_kb(e.base)
        t = time.perf_counter()
        for i in range(20):
            sh(e.run_d(f"m{i}"))
        res["20 × run -d"][n].append(time.perf_counter() - t)
        time.sleep(1)
        mem[(n, "20 running")] = memory_kb(e.base)
        for i in range(20):
            subprocess.run(e.rm(f"m{i}"), shell=True, capture_output=True)
    for e in engines.values():
        e.stop()

    print(f"\nbusybox (Debian's busybox-static), storage on tmpfs, no network unless said; medians of {RUNS} runs (min–max)\n")
    print("| measure | " + " | ".join(names) + " | drayd / " + " | drayd / ".join(names[1:]) + " |")
    print("|" + "---|" * (2 * len(names)))
    for label, per in res.items():
        med = {n: statistics.median(v) for n, v in per.items() if v}
        cells = " | ".join((f"{med[n] * 1000:.0f} ms" + (f" ({min(per[n]) * 1000:.0f}–{max(per[n]) * 1000:.0f})" if len(per[n]) > 1 else "")) if n in med else "–" for n in names)
        ratios = " | ".join(f"{med['drayd'] / med[n]:.2f}" if med.get(n) else "–" for n in names[1:])
        print(f"| {label} | {cells} | {ratios} |")
    for state in ("idle", "20 running"):
        for i, kind in enumerate(("RSS", "PSS")):
            cells = " | ".join(f"{mem[(n, state)][i] / 1024:.1f} MiB" for n in names)
            # podman has no daemon: idle, it holds nothing (no ratio).
            ratios = " | ".join(f"{mem[('drayd', state)][i] / mem[(n, state)][i]:.2f}" if mem[(n, state)][i] else "–" for n in names[1:])
            print(f"| {kind}, {state} (daemon + helpers) | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
