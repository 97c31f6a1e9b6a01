#!/usr/bin/env python3
"""drayd's image benchmark, side by side in one run with containerd 1.6 (`ctr images pull`, which
unpacks), podman 4.3 and dockerd 20.10 from Debian:

- a cold pull (fetch, verify, decompress, unpack) of a multi-layer image of a few hundred MB
  and tens of thousands of files, built from files on this machine and served by a loopback
  docker-registry;
- `load` of the same image as a docker-archive (uncompressed layers, as `docker save` writes);
- drayd's RSS idle and after the pull.

Every engine starts from empty state for every measured run (its daemon is restarted on a
fresh directory; the start is not measured), and every engine's storage is on the same tmpfs,
so that no engine pays for the root file system's habits (this machine's ext4 has no journal
and slows down file creation after mass deletion). References: a sequential `tar -xzf` of the
layers and `gzip -dc` alone, on the same tmpfs.

Run through `make bench` (as root), or alone: `python3 bench/images.py`. BENCH_IMAGE_RUNS
(default 3) sets the runs per engine; the order of engines rotates every round.
"""
import json, os, hashlib, re, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release")
RUNS = int(os.environ.get("BENCH_IMAGE_RUNS", "3"))
LAYERS = ["usr/include", "usr/share/man", "usr/share/doc", "usr/lib/python3", "usr/lib/gcc", "usr/share/perl", "usr/share/i18n"]


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(pred, what, limit=60):
    t = time.time()
    while time.time() - t < limit:
        if pred():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_image(work):
    """An OCI layout of LAYERS (gzip -6), each a tar of one directory of this machine."""
    lay = os.path.join(work, "layout")
    blobs = os.path.join(lay, "blobs/sha256")
    os.makedirs(blobs)
    descs, diff_ids, files, raw_total = [], [], 0, 0
    for d in LAYERS:
        if not os.path.isdir("/" + d):
            continue
        tarp = os.path.join(work, "layer.tar")
        sh(f"tar -C / --numeric-owner -cf {tarp} {d}")
        files += int(subprocess.run(f"find /{d} -type f | wc -l", shell=True, capture_output=True, text=True).stdout)
        raw_total += os.path.getsize(tarp)
        diff_ids.append("sha256:" + sha256_file(tarp))
        sh(f"gzip -6 -n {tarp}")
        gz = tarp + ".gz"
        dg = sha256_file(gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + dg, "size": os.path.getsize(gz)})
        os.rename(gz, os.path.join(blobs, dg))

    def put(obj):
        b = json.dumps(obj).encode()
        d = hashlib.sha256(b).hexdigest()
        open(os.path.join(blobs, d), "wb").write(b)
        return {"digest": "sha256:" + d, "size": len(b)}

    cfg = put({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
               "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    man = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": dict(cfg, mediaType="application/vnd.oci.image.config.v1+json"), "layers": descs})
    json.dump({"schemaVersion": 2, "manifests": [dict(man, mediaType="application/vnd.oci.image.manifest.v1+json",
                                                      annotations={"org.opencontainers.image.ref.name": "latest"})]},
              open(os.path.join(lay, "index.json"), "w"))
    open(os.path.join(lay, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
    gz_total = sum(d["size"] for d in descs)
    return lay, descs, {"layers": len(descs), "files": files, "size": raw_total, "gz": gz_total}


class Registry:
    def __init__(self, work):
        self.port = free_port()
        cfg = os.path.join(work, "registry.yml")
        open(cfg, "w").write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\nhttp:\n  addr: 127.0.0.1:{self.port}\n")
        self.p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", self.port)) == 0, "docker-registry")

    def stop(self):
        self.p.kill()
        self.p.wait()


class Daemon:
    """A daemon restarted on an empty directory for every run."""

    def __init__(self, name, base):
        self.name, self.base, self.p = name, os.path.join(base, name), None

    def fresh(self):
        self.stop()
        if os.path.exists(self.base):
            sh(f"grep -o ' {self.base}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l", stderr=subprocess.DEVNULL)
            shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.base)
        self.start()

    def start(self):
        pass

    def stop(self):
        if self.p:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
            self.p = None

    def spawn(self, args, sock):
        log = open(os.path.join(self.base, "daemon.log"), "w")
        self.p = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(sock), f"{self.name} socket")


class Drayd(Daemon):
    def start(self):
        self.sock = os.path.join(self.base, "run/drayd.sock")
        self.spawn([f"{BIN}/drayd", "--data-root", f"{self.base}/data", "--exec-root", f"{self.base}/run"], self.sock)

    def ctl(self, args):
        return f"DRAY_HOST=unix://{self.sock} {BIN}/drayctl {args}"

    def pull(self, ref):
        return self.ctl(f"pull -q {ref}")

    def load(self, tar):
        return self.ctl(f"load -i {tar}")

    def log(self):
        return open(os.path.join(self.base, "daemon.log")).read()


class Containerd(Daemon):
    def start(self):
        self.sock = os.path.join(self.base, "containerd.sock")
        cfg = os.path.join(self.base, "config.toml")
        open(cfg, "w").write(f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n[grpc]\naddress = "{self.sock}"\n'
                             '[plugins."io.containerd.grpc.v1.cri"]\ndisable_cgroup = true\n')
        self.spawn(["containerd", "--config", cfg], self.sock)

    def pull(self, ref):
        return f"ctr -a {self.sock} images pull --plain-http {ref} >/dev/null"

    def load(self, tar):
        return f"ctr -a {self.sock} images import {tar} >/dev/null"


class Dockerd(Daemon):
    def start(self):
        self.sock = os.path.join(self.base, "docker.sock")
        self.spawn(["dockerd", "--data-root", f"{self.base}/data", "--exec-root", f"{self.base}/exec", "--pidfile", f"{self.base}/pid",
                    "-H", f"unix://{self.sock}", "--iptables=false", "--ip6tables=false", "--bridge=none",
                    "--containerd-namespace", "bench", "--storage-driver", "overlay2"], self.sock)
        wait_for(lambda: subprocess.run(f"docker -H unix://{self.sock} version", shell=True, capture_output=True).returncode == 0, "dockerd")

    def pull(self, ref):
        return f"docker -H unix://{self.sock} pull -q {ref} >/dev/null"

    def load(self, tar):
        return f"docker -H unix://{self.sock} load -q -i {tar} >/dev/null"


class Podman(Daemon):
    def start(self):
        os.makedirs(f"{self.base}/tmp", exist_ok=True)
        self.args = f"podman --root {self.base}/root --runroot {self.base}/run --tmpdir {self.base}/tmp --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"

    def pull(self, ref):
        return f"{self.args} pull -q --tls-verify=false docker://{ref} >/dev/null"

    def load(self, tar):
        return f"{self.args} load -q -i {tar} >/dev/null"

    def stop(self):
        if os.path.exists(self.base):
            subprocess.run(f"{self.args} system reset -f", shell=True, capture_output=True) if hasattr(self, "args") else None


def timed(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{r.stdout}{r.stderr}")
    return time.perf_counter() - t


def rss_kb(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1])
    return 0


def main():
    work = tempfile.mkdtemp(prefix="dray-bench-images-")
    store = os.path.join(work, "store")
    os.makedirs(store)
    sh(f"mount -t tmpfs -o size=12g tmpfs {store}")
    try:
        run(work, store)
    finally:
        subprocess.run(f"grep -o ' {store}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l", shell=True)
        shutil.rmtree(work, ignore_errors=True)


def run(work, store):
    print("building the image ...", file=sys.stderr)
    lay, descs, info = build_image(store)
    reg = Registry(store)
    ref = f"127.0.0.1:{reg.port}/bench/big:latest"
    sh(f"skopeo copy -q --dest-tls-verify=false oci:{lay}:latest docker://{ref}")
    archive = os.path.join(store, "big-docker.tar")
    sh(f"skopeo copy -q oci:{lay}:latest docker-archive:{archive}:bench/big:latest")
    engines = {"drayd": Drayd("drayd", store)}
    for name, cls, binary in (("containerd", Containerd, "containerd"), ("podman", Podman, "podman"), ("docker", Dockerd, "dockerd")):
        if shutil.which(binary):
            engines[name] = cls(name, store)
    names = list(engines)
    pull = {n: [] for n in names}
    load = {n: [] for n in names}
    phases = []
    rss = {}
    for r in range(RUNS):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            e = engines[n]
            e.fresh()
            if n == "drayd":
                rss["idle"] = rss_kb(e.p.pid)
            pull[n].append(timed(e.pull(ref)))
            if n == "drayd":
                rss["after pull"] = rss_kb(e.p.pid)
                phases.append(e.log())
            e.fresh()
            load[n].append(timed(e.load(archive)))
            e.stop()
    # References on the same tmpfs.
    ref_dir = os.path.join(store, "tar-x")
    os.makedirs(ref_dir)
    blobs = [os.path.join(lay, "blobs/sha256", d["digest"][7:]) for d in descs]
    t_tar = timed(" && ".join(f"tar -C {ref_dir} -xzf {b}" for b in blobs))
    t_gz = timed(" && ".join(f"gzip -dc {b} >/dev/null" for b in blobs))
    reg.stop()

    print(f"\nimage: {info['layers']} layers, {info['files']} files, {info['size'] / 1048576:.0f} MiB ({info['gz'] / 1048576:.0f} MiB gzip); storage: tmpfs; {RUNS} runs each\n")
    head = "| measure | " + " | ".join(names) + " | dray / fastest other |"
    print(head)
    print("|" + "---|" * (len(names) + 2))
    for label, res in (("cold pull + unpack", pull), ("load docker-archive", load)):
        med = {n: statistics.median(v) for n, v in res.items()}
        others = [med[n] for n in names if n != "drayd"]
        ratio = f"{med['drayd'] / min(others):.2f}" if others else "–"
        cells = " | ".join(f"{med[n]:.2f} s ({min(res[n]):.2f}–{max(res[n]):.2f})" for n in names)
        print(f"| {label} | {cells} | {ratio} |")
    print(f"| drayd RSS idle / after pull | {rss.get('idle', 0) / 1024:.1f} / {rss.get('after pull', 0) / 1024:.1f} MiB |" + " |" * (len(names)))
    print(f"\nreferences: sequential `tar -xzf` of the layers {t_tar:.2f} s, `gzip -dc` alone {t_gz:.2f} s")
    # Where drayd's time goes (its per-layer log lines; the last run).
    log = phases[-1] if phases else ""
    fetch = [int(m) for m in re.findall(r"fetch_ms=(\d+)", log)]
    unpack = [int(m) for m in re.findall(r"unpack_ms=(\d+)", log)]
    sync = [int(m) for m in re.findall(r"sync_ms=(\d+)", log)]
    if fetch:
        print(f"drayd per layer (last run): fetch {fetch} ms, unpack (inflate + hash + write) {unpack} ms, syncfs {sync} ms")


if __name__ == "__main__":
    main()
