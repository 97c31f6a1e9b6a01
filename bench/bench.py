#!/usr/bin/env python3
"""dray's start-up benchmark: dray beside runc and crun (and youki when installed), measured in
one interleaved run with hyperfine (rounds over all runtimes), printed as a markdown table of
medians (min/max) with the ratios dray/runc and dray/crun.

Run through `make bench` (as root). Every runtime runs inside one private mount namespace in
which /sys/fs/cgroup shows a pure cgroup v1 tree (the hybrid cgroup2 mount is unmounted there),
because crun 1.8 refuses hybrid hosts: all runtimes then see the same cgroup layout.
"""
import hashlib, io, json, os, shlex, shutil, subprocess, sys, tarfile, tempfile, time, statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where `make build` puts the static binaries (see .cargo/config.toml).
BIN = os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release")
WORK = tempfile.mkdtemp(prefix="dray-bench-")
RUNS = int(os.environ.get("BENCH_RUNS", "30"))
# Interleaving: the runs of each scenario are split into this many rounds over all runtimes.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def runtimes():
    rts = {"dray": os.path.join(BIN, "dray")}
    for name in ("runc", "crun", "youki"):
        p = shutil.which(name)
        if p:
            rts[name] = p
    return rts


def bundle(name, args):
    d = os.path.join(WORK, name)
    sh(f"{ROOT}/tests/fixtures/mkbundle.sh {d} {BIN}/dray -- {args}", stdout=subprocess.DEVNULL)
    # The same config for every runtime; crun 1.8 only knows runtime-spec versions up to 1.0.x.
    cfg = json.load(open(f"{d}/config.json"))
    cfg["ociVersion"] = "1.0.2"
    json.dump(cfg, open(f"{d}/config.json", "w"))
    return d


def hyperfine(name, cmds, prepare=None, cleanup=None, runs=RUNS):
    """Times every runtime's command with hyperfine, interleaved: the runs are split in rounds,
    and each round is one hyperfine invocation over all runtimes (A B C, B C A, C A B, ...), so
    a change in the machine's load hits every runtime alike. Returns {runtime: (median, min,
    max)} in ms."""
    needs_shell = any(ch in c for c in cmds.values() for ch in "|;$&")
    rounds = max(1, min(ROUNDS, runs))
    per_round = max(1, runs // rounds)
    times = {rt: [] for rt in cmds}
    names = list(cmds)
    for r in range(rounds):
        out = os.path.join(WORK, f"{name}-{r}.json")
        # Without a shell (-N) unless a command needs one: a shell's start-up would be measured.
        args = ["hyperfine", "--shell=sh" if needs_shell else "-N", "--runs", str(per_round),
                "--warmup", "2" if r == 0 else "0", "--export-json", out, "--style", "none"]
        # The order rotates every round, so that each runtime runs after each other one
        # equally often (what one leaves behind, such as network namespaces still being torn
        # down, slows whoever runs next).
        for rt in names[r % len(names):] + names[:r % len(names)]:
            c = cmds[rt]
            if prepare:
                # A preparation step may find nothing to delete: never let it fail the run.
                args += ["--prepare", "sh -c " + shlex.quote(prepare[rt] + " >/dev/null 2>&1; true")]
            args += ["-n", rt, c]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        for res in json.load(open(out))["results"]:
            times[res["command"]] += [x * 1000 for x in res["times"]]
    if cleanup:
        for rt in cmds:
            subprocess.run(cleanup[rt], shell=True, stderr=subprocess.DEVNULL)
    return {rt: (statistics.median(t), min(t), max(t)) for rt, t in times.items()}


def peak_rss_kb(cmd):
    """Peak RSS of the command's own process, from GNU time (%M, in KiB). The command's stdio
    goes to /dev/null: a created container inherits it and would hold pipes open."""
    out = os.path.join(WORK, "time.out")
    subprocess.run(["/usr/bin/time", "-o", out, "-f", "%M", "sh", "-c", "exec " + cmd],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return int(open(out).read().strip().splitlines()[-1])


def oci_archive(rootfs, out):
    """An OCI image layout tar of `rootfs` (one uncompressed layer), for `ctr images import`."""
    blobs = {}

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return {"digest": "sha256:" + d, "size": len(data)}

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.add(rootfs, arcname=".")
    layer = blob(buf.getvalue())
    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], "Env": ["PATH=/bin:/sbin:/usr/bin"]},
                              "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
                                "layers": [dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar")]}).encode())
    index = {"schemaVersion": 2, "manifests": [dict(manifest, mediaType="application/vnd.oci.image.manifest.v1+json",
                                                    annotations={"org.opencontainers.image.ref.name": "latest"})]}
    with tarfile.open(out, "w") as t:
        def put(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", json.dumps(index).encode())
        for d, data in blobs.items():
            put(f"blobs/sha256/{d}", data)


def proc_mem_kb(pid):
    """(RSS, PSS) of a process in KiB."""
    rss = int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1])
    pss = int([l for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Pss:")][0].split()[1])
    return rss, pss


def shim_pid(cid):
    """The shim process serving container `cid` (found by its `-id` argument)."""
    for p in os.listdir("/proc"):
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).startswith(b"containerd-shim-") and b"-id" in argv:
            if argv[argv.index(b"-id") + 1] == cid.encode():
                return int(p)
    raise RuntimeError(f"no shim for {cid}")


def shim_rows(rootfs, row):
    """`ctr run --rm` through containerd-shim-dray-v2 + dray and through containerd-shim-runc-v2
    + runc, interleaved, with a private containerd; and the memory of the shims."""
    if not shutil.which("containerd") or not shutil.which("containerd-shim-runc-v2"):
        print("containerd not installed: shim rows skipped", file=sys.stderr)
        return
    d = os.path.join(WORK, "containerd")
    os.makedirs(d)
    sock = os.path.join(d, "c.sock")
    open(os.path.join(d, "config.toml"), "w").write(
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n')
    env = dict(os.environ, PATH=BIN + ":" + os.environ.get("PATH", ""))
    daemon = subprocess.Popen(["containerd", "--config", f"{d}/config.toml"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(f"{d}/log", "w"))
    ctr = f"ctr --address {sock}"
    try:
        for _ in range(100):
            if subprocess.run(f"{ctr} version", shell=True, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        oci_archive(rootfs, f"{d}/img.tar")
        sh(f"{ctr} images import --base-name docker.io/dray/bench {d}/img.tar", stdout=subprocess.DEVNULL)
        img = "docker.io/dray/bench:latest"
        shims = {"dray": "io.containerd.dray.v2", "runc": "io.containerd.runc.v2"}
        row("shim: `ctr run --rm` /bin/true", hyperfine("ctr", {n: f"{ctr} run --rm --runtime {r} {img} ctr-{n} true" for n, r in shims.items()}))
        one, twenty = {}, {}
        for n, r in shims.items():
            ids = [f"mem-{n}-{i}" for i in range(20)]
            for i in ids:
                # Leftovers of an interrupted run, in each runtime's default root.
                subprocess.run(f"{n} --root /run/containerd/{n}/default delete -f {i}", shell=True, env=env, capture_output=True)
                sh(f"{ctr} run -d --runtime {r} {img} {i} sleep 1000", stdout=subprocess.DEVNULL)
            pids = [shim_pid(i) for i in ids]
            mem = [proc_mem_kb(p) for p in pids]
            one[n] = mem[0]
            twenty[n] = (sum(m[0] for m in mem), sum(m[1] for m in mem))
            for i in ids:
                subprocess.run(f"{ctr} task kill -s SIGKILL {i}; sleep 0.2; {ctr} task delete {i}; {ctr} c rm {i}",
                               shell=True, capture_output=True)
        row("shim: RSS of a shim with one container", {n: (v[0] / 1024,) * 3 for n, v in one.items()}, "MiB")
        row("shim: PSS of a shim with one container", {n: (v[1] / 1024,) * 3 for n, v in one.items()}, "MiB")
        row("shim: RSS of 20 shims", {n: (v[0] / 1024,) * 3 for n, v in twenty.items()}, "MiB")
        row("shim: PSS of 20 shims", {n: (v[1] / 1024,) * 3 for n, v in twenty.items()}, "MiB")
    finally:
        daemon.kill()
        daemon.wait()
        subprocess.run(f"for m in $(awk '$5 ~ \"^{d}\" {{print $5}}' /proc/self/mountinfo | sort -r); do umount -l $m; done",
                       shell=True)


def main():
    rts = runtimes()
    b_true = bundle("true", "true")
    b_sleep = bundle("sleep", "sleep 1000")
    roots = {rt: os.path.join(WORK, f"state-{rt}") for rt in rts}
    R = lambda rt: f"{rts[rt]} --root {roots[rt]}"
    rows = []

    def row(label, res, unit="ms"):
        rows.append((label, res, unit))

    if os.environ.get("BENCH_ONLY") == "shim":
        # Only the shim rows (BENCH_ONLY=shim make bench).
        shim_rows(os.path.join(b_true, "rootfs"), row)
        return print_table(rts, rows)

    # Warm-up, not measured: the first runs after the bundle was written pay for cold caches
    # (binaries, page cache, slab) that the first measured row would otherwise carry alone.
    for _ in range(5):
        for rt in rts:
            subprocess.run(f"{R(rt)} run -b {b_true} warm-{rt}", shell=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    row("lifecycle: run /bin/true (+ delete)", hyperfine("lifecycle", {rt: f"{R(rt)} run -b {b_true} bench-{rt}" for rt in rts}))
    # The same after a pause: the first cgroup migration after a quiet period waits for an RCU
    # grace period (several ms here) unless the runtime avoids it (docs/performance.md).
    row("lifecycle after 50 ms idle", hyperfine("cold", {rt: f"{R(rt)} run -b {b_true} cold-{rt}" for rt in rts},
                                                prepare={rt: "sleep 0.05" for rt in rts}, runs=15))
    row("create", hyperfine("create", {rt: f"{R(rt)} create -b {b_true} bench-{rt}" for rt in rts},
                            prepare={rt: f"{R(rt)} delete -f bench-{rt}" for rt in rts},
                            cleanup={rt: f"{R(rt)} delete -f bench-{rt}" for rt in rts}))
    row("start", hyperfine("start", {rt: f"{R(rt)} start bench-{rt}" for rt in rts},
                           prepare={rt: f"sh -c '{R(rt)} delete -f bench-{rt}; {R(rt)} create -b {b_true} bench-{rt}'" for rt in rts},
                           cleanup={rt: f"{R(rt)} delete -f bench-{rt}" for rt in rts}))
    row("delete (stopped)", hyperfine("delete", {rt: f"{R(rt)} delete bench-{rt}" for rt in rts},
                                      prepare={rt: f"sh -c '{R(rt)} delete -f bench-{rt}; {R(rt)} run -d -b {b_true} bench-{rt}; sleep 0.05'" for rt in rts}))
    row("delete --force (running)", hyperfine("deletef", {rt: f"{R(rt)} delete --force bench-{rt}" for rt in rts},
                                              prepare={rt: f"sh -c '{R(rt)} delete -f bench-{rt}; {R(rt)} run -d -b {b_sleep} bench-{rt}'" for rt in rts}))
    for rt in rts:
        sh(f"{R(rt)} delete -f ex-{rt} 2>/dev/null; {R(rt)} run -d -b {b_sleep} ex-{rt}")
    row("exec /bin/true into a running container", hyperfine("exec", {rt: f"{R(rt)} exec ex-{rt} true" for rt in rts},
                                                             cleanup={rt: f"{R(rt)} delete -f ex-{rt}" for rt in rts}))
    row("50 containers in sequence", hyperfine("seq50", {rt: f"for i in $(seq 50); do {R(rt)} run -b {b_true} s{rt}$i; done" for rt in rts}, runs=3))
    row("10 containers in parallel", hyperfine("par10", {rt: f"seq 10 | xargs -P10 -I{{}} {R(rt)} run -b {b_true} p{rt}{{}}" for rt in rts}, runs=5))
    # Memory.
    res = {}
    for rt in rts:
        subprocess.run(f"{R(rt)} delete -f m-{rt}", shell=True, stderr=subprocess.DEVNULL)
        kb = peak_rss_kb(f"{R(rt)} create -b {b_sleep} m-{rt}")
        res[rt] = (kb / 1024, kb / 1024, kb / 1024)
    row("peak RSS of `create`", res, "MiB")
    res = {}
    for rt in rts:
        st = json.loads(subprocess.run(f"{R(rt)} state m-{rt}", shell=True, capture_output=True, text=True).stdout)
        rss = [l for l in open(f"/proc/{st['pid']}/status") if l.startswith("VmRSS")][0].split()[1]
        res[rt] = (int(rss) / 1024,) * 3
        subprocess.run(f"{R(rt)} delete -f m-{rt}", shell=True, stderr=subprocess.DEVNULL)
    row("RSS of a created container's init", res, "MiB")
    res = {}
    for rt in rts:
        kb = peak_rss_kb(f"{R(rt)} run -b {b_true} r-{rt}")
        res[rt] = (kb / 1024,) * 3
    row("peak RSS of `run`", res, "MiB")
    row("binary size", {rt: (os.path.getsize(os.path.realpath(p)) / 1048576,) * 3 for rt, p in rts.items()}, "MiB")
    shim_rows(os.path.join(b_true, "rootfs"), row)
    print_table(rts, rows)


def print_table(rts, rows):
    names = list(rts)
    head = "| measure | " + " | ".join(names) + " | " + " | ".join(f"dray/{n}" for n in names if n != "dray") + " |"
    print(head)
    print("|" + "---|" * (1 + len(names) + len(names) - 1))
    for label, res, unit in rows:
        cells = []
        for n in names:
            if n not in res:
                cells.append("–")
                continue
            med, lo, hi = res[n]
            cells.append(f"{med:.2f} {unit}" if unit != "ms" else f"{med:.2f} ({lo:.2f}–{hi:.2f}) ms")
        ratios = [f"{res['dray'][0] / res[n][0]:.2f}" if n in res and res[n][0] > 0 else "–" for n in names if n != "dray"]
        print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    if os.environ.get("DRAY_BENCH_INNER") != "1":
        # Re-run inside a private mount namespace with a pure cgroup v1 view (see docstring).
        inner = "mount --make-rprivate / && { umount /sys/fs/cgroup/unified 2>/dev/null || true; } && exec python3 " + os.path.abspath(__file__)
        env = dict(os.environ, DRAY_BENCH_INNER="1")
        sys.exit(subprocess.run(["unshare", "-m", "sh", "-c", inner], env=env).returncode)
    main()
