//! drayd's image store end to end: a real registry (docker-registry) on loopback, images
//! built by tests/fixtures/mkimage.py and pushed with skopeo, a private drayd per test, and
//! drayctl as a user runs it. The unpacked trees are compared with what umoci unpacks.

use std::process::Command;

use dray_e2e::manager::{stderr, stdout, tree_listing, Daemon, OverlayView, Registry, TempDir};

#[test]
fn pull_unpacks_what_umoci_unpacks() {
    let reg = Registry::start(&["multi"]);
    let d = Daemon::start();
    let name = format!("{}/test/multi", reg.host());
    let out = d.ok(&["pull", &name]);
    assert!(
        out.starts_with("Using default tag: latest\nlatest: Pulling from test/multi\n"),
        "{out}"
    );
    assert!(
        out.contains("Pull complete") && out.contains("Status: Downloaded newer image for"),
        "{out}"
    );
    assert!(out.trim_end().ends_with(&format!("{name}:latest")), "{out}");

    // docker's columns, one row; the ID is the config digest.
    let images = d.ok(&["images"]);
    let lines: Vec<&str> = images.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID") && lines[0].ends_with("SIZE"),
        "{images}"
    );
    assert_eq!(lines.len(), 2, "{images}");
    assert!(
        lines[1].starts_with(&name) && lines[1].contains("latest") && lines[1].contains("years ago"),
        "{images}"
    );
    let id = d.ok(&["images", "-q"]).trim().to_string();
    assert_eq!(id.len(), 12);

    // inspect: docker's layout, the config's diff IDs, the repo digest of the index.
    let inspect: serde_json::Value = serde_json::from_str(&d.ok(&["image", "inspect", &name])).unwrap();
    let img = &inspect[0];
    assert!(img["Id"].as_str().unwrap().starts_with(&format!("sha256:{id}")));
    assert_eq!(img["RepoTags"][0], format!("{name}:latest"));
    assert!(img["RepoDigests"][0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{name}@sha256:")));
    assert_eq!(img["Architecture"], "amd64");
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(img["Config"]["Labels"]["org.dray.test"], "yes");
    assert_eq!(img["GraphDriver"]["Name"], "overlayfs");
    let index_digest = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}:latest"),
        ])
        .output()
        .unwrap();
    let want = format!("sha256:{}", sha256_hex(&index_digest.stdout));
    assert!(
        img["RepoDigests"][0].as_str().unwrap().ends_with(&want),
        "repo digest is the index's: {img}"
    );

    // history: newest first, the image ID on top, <missing> below, one row per history entry.
    let hist = d.ok(&["history", &name]);
    let hl: Vec<&str> = hist.lines().collect();
    assert!(hl[0].starts_with("IMAGE") && hl[0].contains("CREATED BY"), "{hist}");
    assert_eq!(hl.len(), 5, "{hist}");
    assert!(hl[1].starts_with(&id) && hl[2].starts_with("<missing>"), "{hist}");

    // The layers stacked by overlayfs show what umoci unpacks from the same image.
    let upper = d
        .ok(&["image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", &name])
        .trim()
        .to_string();
    let lower = d
        .ok(&["image", "inspect", "--format", "{{.GraphDriver.Data.LowerDir}}", &name])
        .trim()
        .to_string();
    let view = OverlayView::new(&format!("{upper}:{lower}"));
    let (_umoci, rootfs) = dray_e2e::manager::umoci_rootfs(&format!("{name}:latest"));
    let ours = tree_listing(&view.path);
    let theirs = tree_listing(&rootfs);
    assert!(
        ours.iter()
            .any(|l| l.starts_with("usr/bin/suid ") && l.contains(" 4755 ")),
        "{ours:#?}"
    );
    assert!(
        ours.iter()
            .any(|l| l.starts_with("usr/bin/cap ") && l.contains("security.capability")),
        "{ours:#?}"
    );
    assert!(
        ours.iter()
            .any(|l| l.starts_with("usr/bin/xattrs ") && l.contains("user.dray")),
        "{ours:#?}"
    );
    assert!(
        ours.iter()
            .any(|l| l.starts_with("dev/null-copy ") && l.contains("dev=1,3")),
        "{ours:#?}"
    );
    assert!(
        !ours
            .iter()
            .any(|l| l.starts_with("var/log/old.log") || l.starts_with("opq/lower-file")),
        "{ours:#?}"
    );
    assert_eq!(ours, theirs, "drayd's unpacked image differs from umoci's");
    // hard-a and hard-b are one inode.
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(view.path.join("usr/bin/hard-a")).unwrap();
    let b = std::fs::metadata(view.path.join("usr/bin/hard-b")).unwrap();
    assert_eq!(a.ino(), b.ino());
    drop(view);

    // The whiteout layer keeps overlay's whiteout (0/0 char device) and opaque xattr.
    let layers: Vec<&str> = lower.split(':').collect();
    let wl = std::path::Path::new(&upper);
    use std::os::unix::fs::FileTypeExt;
    let wh = std::fs::symlink_metadata(wl.join("var/log/old.log")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let opq = Command::new("getfattr")
        .args(["--only-values", "-n", "trusted.overlay.opaque"])
        .arg(wl.join("opq"))
        .output();
    if let Ok(o) = opq {
        if o.status.success() {
            assert_eq!(stdout(&o), "y");
        }
    }
    assert_eq!(layers.len(), 2);

    // A second pull finds everything there.
    let again = d.ok(&["pull", &name]);
    assert!(again.contains("Status: Image is up to date"), "{again}");
    assert!(again.contains("Already exists"), "{again}");
}

fn sha256_hex(b: &[u8]) -> String {
    let o = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    stdout(&o).split_whitespace().next().unwrap().to_string()
}

#[test]
fn platforms_shared_layers_tags_and_garbage_collection() {
    let reg = Registry::start(&["multi", "zstd"]);
    let d = Daemon::start();
    let multi = format!("{}/test/multi", reg.host());
    let zstd = format!("{}/test/zstd:latest", reg.host());

    // --platform selects from the index; an absent platform is a clear error (exit 1, as docker).
    let o = d.run(&["pull", "--platform", "linux/s390x", &multi]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no matching manifest for linux/s390x"),
        "{}",
        stderr(&o)
    );
    d.ok(&["pull", "-q", "--platform", "linux/arm64", &multi]);
    let arch = d.ok(&["image", "inspect", "--format", "{{.Architecture}}", &multi]);
    assert_eq!(arch.trim(), "arm64");
    d.ok(&["rmi", &multi]);
    assert!(d.snapshot_dirs().is_empty(), "{:?}", d.snapshot_dirs());
    assert!(d.blobs().is_empty(), "{:?}", d.blobs());

    // The zstd image shares its first layer with multi.
    d.ok(&["pull", &multi]);
    let out = d.ok(&["pull", &zstd]);
    assert!(out.contains("Already exists"), "{out}");
    assert_eq!(d.snapshot_dirs().len(), 4);
    let upper = d.ok(&["image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", &zstd]);
    let upper = std::path::Path::new(upper.trim());
    assert!(std::fs::read_to_string(upper.join("etc/zstd-layer"))
        .unwrap()
        .starts_with("this layer"));
    // GNU long names and long link targets.
    let long_dir = format!("etc/{}", "gnu-long-directory-name-".repeat(5));
    let long_file = upper.join(&long_dir).join("gnu-long-file-name-".repeat(6));
    assert_eq!(std::fs::read_to_string(long_file).unwrap(), "GNU long name\n");
    assert_eq!(
        std::fs::read_link(upper.join("etc/gnu-long-link")).unwrap(),
        std::path::PathBuf::from(format!("/{}", "target-".repeat(20)))
    );
    // Pull by digest: the same image, known by its repo digest.
    let digest = d.ok(&[
        "images",
        "--digests",
        "--format",
        "{{.Digest}}",
        &format!("{}/test/zstd", reg.host()),
    ]);
    let by_digest = format!("{}/test/zstd@{}", reg.host(), digest.trim());
    let out = d.ok(&["pull", &by_digest]);
    assert!(out.contains("Status: Image is up to date"), "{out}");
    let id_of = |r: &str| d.ok(&["image", "inspect", "--format", "{{.Id}}", r]);
    assert_eq!(id_of(&by_digest), id_of(&zstd));
    // rmi of the digest reference only removes that name (docker's ImageDelete).
    let rm = d.ok(&["rmi", &by_digest]);
    assert!(rm.starts_with("Untagged: ") && !rm.contains("Deleted:"), "{rm}");
    assert_eq!(
        d.ok(&["image", "inspect", "--format", "{{json .RepoDigests}}", &zstd])
            .trim(),
        "[]"
    );

    // tag: a second name; rmi of one name only untags.
    d.ok(&["tag", &zstd, "local/copy:v1"]);
    let ids = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(ids.contains("local/copy:v1"), "{ids}");
    let rm = d.ok(&["rmi", "local/copy:v1"]);
    assert_eq!(rm.trim(), "Untagged: local/copy:v1");
    let filtered = d.ok(&["images", "--filter", "reference=*/test/zstd", "-q"]);
    assert_eq!(filtered.lines().count(), 1, "{filtered}");
    let df = d.ok(&["system", "df"]);
    assert!(df.contains("Images") && df.contains("RECLAIMABLE"), "{df}");

    // Removing multi keeps the shared layer; removing zstd too leaves nothing behind.
    let rm = d.ok(&["rmi", &multi]);
    assert!(rm.contains("Untagged:") && rm.contains("Deleted: sha256:"), "{rm}");
    assert_eq!(d.snapshot_dirs().len(), 2);
    let o = d.run(&["rmi", "does/not:exist"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such image"), "{}", stderr(&o));
    d.ok(&["rmi", &zstd]);
    assert!(
        d.snapshot_dirs().is_empty() && d.blobs().is_empty(),
        "{:?} {:?}",
        d.snapshot_dirs(),
        d.blobs()
    );
    assert_eq!(d.ok(&["images", "-q"]), "");
}

#[test]
fn hostile_images_are_refused_and_write_nothing_outside() {
    let names = [
        "hostile-dotdot",
        "hostile-symlink",
        "hostile-hardlink",
        "hostile-whiteout",
        "hostile-whiteout-dotdot",
        "hostile-diffid",
        "hostile-truncated",
        "hostile-longname",
        "hostile-sparse",
    ];
    let reg = Registry::start(&names);
    let d = Daemon::start();
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    for (n, why) in names.iter().zip([
        "points outside the layer",
        "a parent is a symlink",
        "points outside the layer",
        "invalid whiteout",
        "points outside the layer",
        "diff ID",
        "truncated or corrupt",
        "tar header record",
        "sparse files",
    ]) {
        let o = d.run(&["pull", &format!("{}/test/{n}", reg.host())]);
        assert_eq!(o.status.code(), Some(1), "{n}: {}", stdout(&o));
        assert!(stderr(&o).contains(why), "{n}: {}", stderr(&o));
        assert!(
            d.snapshot_dirs().is_empty(),
            "{n} left snapshots: {:?}",
            d.snapshot_dirs()
        );
        assert_eq!(d.ok(&["images", "-q"]), "", "{n} left an image");
    }
    for p in ["/escaped-dotdot", "/tmp/escaped-symlink", "/tmp/escaped-dotdot"] {
        assert!(!std::path::Path::new(p).exists(), "{p} was written");
    }
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    // The garbage collector takes the blobs the failed pulls left.
    d.ok(&["system", "prune", "-f"]);
    assert!(d.blobs().is_empty(), "{:?}", d.blobs());
}

#[test]
fn a_blob_whose_digest_lies_is_never_stored() {
    let reg = Registry::start(&["zstd"]);
    let d = Daemon::start();
    // Corrupt the layer in the registry's storage: same digest name, other bytes.
    let (_, manifest) = dray_e2e::manager::fixture_manifest("zstd");
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let data = reg.blob_dir(&layer).join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let o = d.run(&["pull", &format!("{}/test/zstd", reg.host())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refusing it"), "{}", stderr(&o));
    assert!(!d.blobs().contains(&layer));
    assert!(!d
        .data_root()
        .join("content/ingest")
        .join(format!("sha256-{layer}"))
        .exists());
}

#[test]
fn daemon_lifecycle_and_errors() {
    let mut d = Daemon::start();
    // A second drayd on the same roots is refused.
    let o = d.command().output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another drayd"), "{}", stderr(&o));
    // version and info answer.
    let v = d.ok(&["version"]);
    assert!(v.contains("Server: drayd"), "{v}");
    let info = d.ok(&["info", "--format", "{{.Driver}} {{.DockerRootDir}}"]);
    assert_eq!(info.trim(), format!("overlayfs {}", d.data_root().display()));
    // Bad input: a clear error and exit 1 (docker's code for everything but run and create).
    let o = d.run(&["pull", "UPPERCASE"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid reference format"), "{}", stderr(&o));
    let o = d.run(&["pull", "127.0.0.1:1/none"]);
    assert_eq!(o.status.code(), Some(1));
    // Unknown flags exit 125 as docker's do; --help exits 0.
    assert_eq!(d.run(&["images", "--bogus"]).status.code(), Some(125));
    assert_eq!(d.run(&["pull", "--help"]).status.code(), Some(0));
    let comp = d.ok(&["completion", "bash"]);
    assert!(comp.contains("drayctl"), "completion script");
    // SIGTERM: a clean exit that removes the socket.
    let st = d.stop().unwrap();
    assert!(st.success(), "{st:?}: {}", d.log());
    assert!(!d.socket().exists());
    let o = d.run(&["images"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Cannot connect to drayd"), "{}", stderr(&o));
    // It starts again on the same roots.
    d.spawn();
    d.ok(&["images"]);
}

#[test]
fn kill_9_then_restart_keeps_a_consistent_store() {
    let reg = Registry::start(&["multi"]);
    let mut d = Daemon::start();
    let name = format!("{}/test/multi", reg.host());
    d.ok(&["pull", &name]);
    // A stray snapshot directory (a crash between mkdir and the database) and an interrupted
    // unpack are cleaned on the next start.
    d.kill9();
    std::fs::create_dir_all(d.data_root().join("snapshots/999/fs")).unwrap();
    d.spawn();
    assert!(!d.data_root().join("snapshots/999").exists());
    let again = d.ok(&["pull", &name]);
    assert!(again.contains("Image is up to date"), "{again}");
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn save_load_import_and_push_round_trips() {
    let reg = Registry::start(&["multi", "zstd"]);
    let d = Daemon::start();
    let multi = format!("{}/test/multi:latest", reg.host());
    d.ok(&["pull", "-q", &multi]);
    let id = d.ok(&["images", "-q", "--no-trunc"]).trim().to_string();
    let tmp = TempDir::new("save");
    let archive = tmp.path().join("multi.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), &multi]);
    // skopeo reads it as a docker-archive and as an OCI archive, with our digests.
    let o = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let inspect: serde_json::Value = serde_json::from_str(&d.ok(&["image", "inspect", &multi])).unwrap();
    let manifest_layers = v["Layers"].as_array().unwrap().len();
    assert_eq!(
        manifest_layers,
        inspect[0]["RootFS"]["Layers"].as_array().unwrap().len()
    );
    // The archive's layers are the registry's, digest for digest.
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{multi}")])
        .output()
        .unwrap();
    let remote: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Layers"], remote["Layers"]);

    // Load it back after removing it: same image ID, same unpacked files.
    d.ok(&["rmi", &multi]);
    assert!(d.snapshot_dirs().is_empty());
    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image: {multi}"));
    assert_eq!(d.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    // From stdin too, and a second load changes nothing.
    let o = d
        .ctl()
        .args(["load"])
        .stdin(std::fs::File::open(&archive).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 1);
    // --format oci-archive has no manifest.json.
    let oci = tmp.path().join("multi-oci.tar");
    d.ok(&["save", "--format", "oci-archive", "-o", oci.to_str().unwrap(), &multi]);
    let list = Command::new("tar").arg("tf").arg(&oci).output().unwrap();
    assert!(!stdout(&list).contains("manifest.json") && stdout(&list).contains("index.json"));
    // An archive that is no image is a clear error.
    let junk = tmp.path().join("junk.tar");
    assert!(Command::new("tar")
        .arg("cf")
        .arg(&junk)
        .arg("-C")
        .arg("/etc")
        .arg("hostname")
        .status()
        .unwrap()
        .success());
    let o = d.run(&["load", "-i", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not an image archive"), "{}", stderr(&o));

    // skopeo's oci-archive of the zstd image loads (no names: dangling, as docker shows it).
    let zoci = tmp.path().join("zstd-oci.tar");
    let o = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{}/test/zstd:latest", reg.host()),
        ])
        .arg(format!(
            "oci-archive:{}:{}/test/zstd:latest",
            zoci.display(),
            reg.host()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.ok(&["load", "-i", zoci.to_str().unwrap()]);
    assert!(out.contains("Loaded image"), "{out}");

    // import: a rootfs tarball becomes a one-layer image with the --change applied.
    let rootfs = tmp.path().join("rootfs.tar");
    assert!(Command::new("tar")
        .arg("cf")
        .arg(&rootfs)
        .arg("-C")
        .arg("/bin")
        .arg("busybox")
        .status()
        .unwrap()
        .success());
    let new_id = d.ok(&[
        "import",
        "-c",
        "CMD [\"/busybox\", \"sh\"]",
        "-c",
        "ENV A=b",
        "-m",
        "from the test",
        rootfs.to_str().unwrap(),
        "local/imported:v1",
    ]);
    assert!(new_id.trim().starts_with("sha256:"), "{new_id}");
    let cfg = d.ok(&["image", "inspect", "--format", "{{json .Config}}", "local/imported:v1"]);
    assert!(cfg.contains("\"/busybox\"") && cfg.contains("A=b"), "{cfg}");
    let hist = d.ok(&["history", "local/imported:v1"]);
    assert!(hist.contains("from the test"), "{hist}");
    let upper = d.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Data.UpperDir}}",
        "local/imported:v1",
    ]);
    assert_eq!(
        std::fs::read(std::path::Path::new(upper.trim()).join("busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    let o = d.run(&["import", "-c", "BOGUS x", rootfs.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));

    // push: to a new repository (layers mounted from the one it came from), again (skipped),
    // and an imported image (uploaded); skopeo sees the same layers.
    let target = format!("{}/pushed/multi:v1", reg.host());
    d.ok(&["tag", &multi, &target]);
    let out = d.ok(&["push", &target]);
    assert!(
        out.contains(&format!("The push refers to repository [{}/pushed/multi]", reg.host())),
        "{out}"
    );
    assert!(out.contains("Mounted from test/multi"), "{out}");
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    let again = d.ok(&["push", &target]);
    assert!(
        again.contains("Layer already exists") && !again.contains("Pushed"),
        "{again}"
    );
    let imported = format!("{}/pushed/imported:v1", reg.host());
    d.ok(&["tag", "local/imported:v1", &imported]);
    let out = d.ok(&["push", &imported]);
    assert!(out.contains("Pushed"), "{out}");
    let layers = |r: &str| {
        let o = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", &format!("docker://{r}")])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["Layers"].clone()
    };
    assert_eq!(layers(&target), layers(&format!("{}/test/multi:latest", reg.host())));
    // Pulled back by another drayd, the pushed import is the same image.
    let d2 = Daemon::start();
    d2.ok(&["pull", "-q", &imported]);
    assert_eq!(d2.ok(&["images", "-q", "--no-trunc"]).trim(), new_id.trim());
    let o = d.run(&["push", "no/such:image"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist locally"), "{}", stderr(&o));
}

#[test]
fn an_interrupted_pull_resumes_after_kill_9() {
    let reg = Registry::start(&["big"]);
    // 2 MB/s: the 8 MiB layer takes about four seconds.
    let proxy = dray_e2e::manager::SlowProxy::start(reg.port, 2 << 20);
    let mut d = Daemon::start();
    let name = format!("127.0.0.1:{}/test/big:latest", proxy.port);
    let mut pull = d
        .ctl()
        .args(["pull", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ingest = d.data_root().join("content/ingest");
    let partial = || dray_e2e::manager::partial_download(&ingest);
    assert!(
        dray_e2e::manager::wait_until(std::time::Duration::from_secs(30), partial),
        "no partial download appeared"
    );
    d.kill9();
    let _ = pull.wait();
    let had: u64 = std::fs::read_dir(&ingest)
        .unwrap()
        .flatten()
        .map(|e| std::fs::metadata(e.path().join("data")).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(had > 0 && had < 9 << 20, "{had}");
    d.spawn();
    // The next pull (straight from the registry this time) resumes with a Range request.
    let direct = format!("{}/test/big:latest", reg.host());
    d.ok(&["pull", "-q", &direct]);
    assert!(d.log().contains("resuming a download"), "{}", d.log());
    // Every blob's content has the digest it is stored under.
    for b in d.blobs() {
        let o = Command::new("sha256sum")
            .arg(d.data_root().join("content/blobs/sha256").join(&b))
            .output()
            .unwrap();
        assert!(stdout(&o).starts_with(&b), "blob {b} is corrupt");
    }
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0, "ingests left behind");
    drop(proxy);
}

#[test]
fn docker_and_podman_read_what_drayd_saves_and_drayd_loads_docker_save() {
    let reg = Registry::start(&["multi"]);
    let d = Daemon::start();
    let multi = format!("{}/test/multi:latest", reg.host());
    d.ok(&["pull", "-q", &multi]);
    let id = d.ok(&["images", "-q", "--no-trunc"]).trim().to_string();
    let tmp = TempDir::new("interop");
    let archive = tmp.path().join("multi.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), &multi]);

    let dockerd = dray_e2e::engines::Dockerd::start("images");
    let o = dockerd.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(o.status.success(), "docker load: {}", stderr(&o));
    let o = dockerd.docker(&["image", "inspect", "--format", "{{.Id}}", &multi]);
    assert_eq!(stdout(&o).trim(), id, "docker sees another image ID: {}", stderr(&o));
    // docker save's own archive loads into drayd with the same image ID.
    let theirs = tmp.path().join("docker-save.tar");
    let o = dockerd.docker(&["save", "-o", theirs.to_str().unwrap(), "dray/busybox:latest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let docker_id = stdout(&dockerd.docker(&["image", "inspect", "--format", "{{.Id}}", "dray/busybox:latest"]))
        .trim()
        .to_string();
    let out = d.ok(&["load", "-i", theirs.to_str().unwrap()]);
    assert!(out.contains("Loaded image: dray/busybox:latest"), "{out}");
    assert_eq!(
        d.ok(&["image", "inspect", "--format", "{{.Id}}", "dray/busybox"])
            .trim(),
        docker_id
    );
    drop(dockerd);

    let podman = dray_e2e::engines::Podman::new("images");
    let o = podman.podman(&["load", "-i", archive.to_str().unwrap()]);
    assert!(o.status.success(), "podman load: {}", stderr(&o));
    let o = podman.podman(&["image", "inspect", "--format", "{{.Id}}", &multi]);
    assert_eq!(format!("sha256:{}", stdout(&o).trim()), id, "{}", stderr(&o));
}

fn login_flow(auth: dray_e2e::manager::RegistryAuth) {
    use dray_e2e::manager::REGISTRY_USER;
    let reg = Registry::start_with(&["zstd"], auth);
    let d = Daemon::start();
    let name = format!("{}/test/zstd:latest", reg.host());
    let o = d.run(&["pull", &name]);
    assert_eq!(o.status.code(), Some(1), "{:?}: anonymous pull must fail", auth);
    assert!(stderr(&o).contains("drayctl login"), "{}", stderr(&o));
    // A wrong password is refused and nothing is stored.
    let o = d
        .ctl()
        .args(["login", "-u", REGISTRY_USER.0, "--password-stdin", &reg.host()])
        .stdin_bytes(b"wrong\n");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!d.dir.path().join("docker-config/config.json").exists());
    let o = d
        .ctl()
        .args(["login", "-u", REGISTRY_USER.0, "--password-stdin", &reg.host()])
        .stdin_bytes(format!("{}\n", REGISTRY_USER.1).as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "Login Succeeded");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.dir.path().join("docker-config/config.json")).unwrap()).unwrap();
    assert!(cfg["auths"][reg.host()]["auth"].is_string(), "{cfg}");
    d.ok(&["pull", "-q", &name]);
    // Push with the same credentials.
    let target = format!("{}/pushed/zstd:v1", reg.host());
    d.ok(&["tag", &name, &target]);
    d.ok(&["push", "-q", &target]);
    let out = d.ok(&["logout", &reg.host()]);
    assert_eq!(out.trim(), format!("Removing login credentials for {}", reg.host()));
    d.ok(&["rmi", &name, &target]);
    assert_eq!(d.run(&["pull", &name]).status.code(), Some(1));
}

trait StdinBytes {
    fn stdin_bytes(&mut self, b: &[u8]) -> std::process::Output;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, b: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut c = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(b).unwrap();
        c.wait_with_output().unwrap()
    }
}

#[test]
fn basic_auth_login_pull_push_logout() {
    login_flow(dray_e2e::manager::RegistryAuth::Basic);
}

#[test]
fn token_auth_login_pull_push_logout() {
    login_flow(dray_e2e::manager::RegistryAuth::Token);
}

#[test]
fn mirrors_answer_for_their_registry() {
    // docker.io is out of reach here: a mirror configured for it serves the pull.
    let reg = Registry::start(&["zstd"]);
    let mut d = Daemon::start();
    d.stop();
    let cfg = d.dir.path().join("drayd.toml");
    std::fs::write(
        &cfg,
        format!(
            "registry-mirrors = [\"http://{}\"]\nmax-concurrent-downloads = 1\n",
            reg.host()
        ),
    )
    .unwrap();
    d.config = Some(cfg);
    d.spawn();
    let out = d.ok(&["pull", "test/zstd"]);
    assert!(out.trim_end().ends_with("docker.io/test/zstd:latest"), "{out}");
    assert_eq!(
        d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).trim(),
        "test/zstd:latest"
    );
    let info = d.ok(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"]);
    assert!(info.contains(&reg.host()), "{info}");
    // A bad config file is refused with the key named.
    d.stop();
    std::fs::write(d.config.as_ref().unwrap(), "no-such-key = 1\n").unwrap();
    let o = d.command().output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no-such-key"), "{}", stderr(&o));
}

#[test]
fn missing_blobs_and_huge_declared_sizes_are_clear_errors() {
    let reg = Registry::start(&["zstd"]);
    let d = Daemon::start();
    let (mbytes, mut manifest) = dray_e2e::manager::fixture_manifest("zstd");

    // A manifest whose layer declares a petabyte: refused before anything is fetched.
    manifest["layers"][1]["size"] = serde_json::json!(1u64 << 50);
    let body = serde_json::to_vec(&manifest).unwrap();
    let put = |name: &str, body: &[u8]| {
        let o = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/vnd.oci.image.manifest.v1+json",
                "--data-binary",
                "@-",
            ])
            .arg(format!("http://{}/v2/test/{name}/manifests/latest", reg.host()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(body)?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(o.status.success(), "curl PUT: {}", stderr(&o));
    };
    put("zstd", &body);
    let o = d.run(&["pull", &format!("{}/test/zstd", reg.host())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bytes free"), "{}", stderr(&o));
    assert!(d.snapshot_dirs().is_empty());

    // The original manifest again, with one of its layers deleted from the registry.
    put("zstd", &mbytes);
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob_dir = reg.blob_dir(&layer);
    std::fs::remove_dir_all(&blob_dir).unwrap();
    let o = d.run(&["pull", &format!("{}/test/zstd", reg.host())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).to_lowercase().contains("unknown") || stderr(&o).contains("not found"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.ok(&["images", "-q"]), "");
    // Only committed layers stay (the one that arrived); nothing half-made.
    for s in d.snapshot_dirs() {
        assert!(d.data_root().join("snapshots").join(&s).join("fs").exists());
    }
    d.ok(&["system", "prune", "-f"]);
    assert!(
        d.snapshot_dirs().is_empty() && d.blobs().is_empty(),
        "{:?} {:?}",
        d.snapshot_dirs(),
        d.blobs()
    );
}

#[test]
fn tls_registries_use_the_ca_file_configured_for_their_host() {
    let (reg, ca) = Registry::start_tls(&["zstd"]);
    let mut d = Daemon::start();
    let name = format!("{}/test/zstd", reg.host());
    // A loopback registry is spoken to over plain HTTP unless its host has a CA file.
    let o = d.run(&["pull", &name]);
    assert_eq!(o.status.code(), Some(1));
    d.stop();
    let cfg = d.dir.path().join("drayd.toml");
    std::fs::write(
        &cfg,
        format!("[registry.\"{}\"]\nca-file = \"{}\"\n", reg.host(), ca.display()),
    )
    .unwrap();
    d.config = Some(cfg.clone());
    d.spawn();
    d.ok(&["pull", "-q", &name]);
    // A CA that did not sign the registry's certificate is refused.
    d.ok(&["rmi", &name]);
    d.stop();
    let other = d.dir.path().join("other-ca.pem");
    dray_e2e::manager::self_signed(&d.dir.path().join("other-key.pem"), &other, "/CN=other");
    std::fs::write(
        &cfg,
        format!("[registry.\"{}\"]\nca-file = \"{}\"\n", reg.host(), other.display()),
    )
    .unwrap();
    d.spawn();
    let o = d.run(&["pull", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).to_lowercase().contains("certificate"), "{}", stderr(&o));
}

#[test]
fn credential_helpers_supply_the_password() {
    let reg = Registry::start_with(&["zstd"], dray_e2e::manager::RegistryAuth::Basic);
    let d = Daemon::start();
    let bin = d.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-drayfake");
    let (user, pass) = dray_e2e::manager::REGISTRY_USER;
    std::fs::write(
        &helper,
        format!("#!/bin/sh\ncase \"$1\" in\n  get) read server; printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{pass}\"}}' \"$server\";;\n  *) cat >/dev/null;;\nesac\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = d.dir.path().join("docker-config");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("config.json"),
        format!("{{\"credHelpers\": {{\"{}\": \"drayfake\"}}}}", reg.host()),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o = d
        .ctl()
        .env("PATH", path)
        .args(["pull", "-q", &format!("{}/test/zstd", reg.host())])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn concurrent_pulls_of_one_image_fetch_and_store_it_once() {
    let reg = Registry::start(&["multi"]);
    let d = Daemon::start();
    let name = format!("{}/test/multi", reg.host());
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            d.ctl()
                .args(["pull", "-q", &name])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in pulls {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(d.snapshot_dirs().len(), 3, "{:?}", d.snapshot_dirs());
    // index, manifest, config and three layers.
    assert_eq!(d.blobs().len(), 6, "{:?}", d.blobs());
    assert_eq!(
        std::fs::read_dir(d.data_root().join("content/ingest")).unwrap().count(),
        0
    );
}

#[test]
fn the_native_snapshotter_unpacks_the_same_tree() {
    let reg = Registry::start(&["multi"]);
    let mut d = Daemon::start();
    d.stop();
    // A data root made for one snapshotter refuses the other.
    let cfg = d.dir.path().join("drayd.toml");
    std::fs::write(&cfg, "snapshotter = \"native\"\n").unwrap();
    d.config = Some(cfg);
    let o = d.command().output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("holds overlayfs snapshots"), "{}", stderr(&o));
    std::fs::remove_dir_all(d.data_root()).unwrap();
    d.spawn();
    let name = format!("{}/test/multi", reg.host());
    d.ok(&["pull", "-q", &name]);
    let driver = d.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Name}} {{.GraphDriver.Data.Dir}}",
        &name,
    ]);
    let (drv, dir) = driver.trim().split_once(' ').unwrap();
    assert_eq!(drv, "native");
    // The top snapshot is the whole tree, whiteouts applied: compare it with umoci's unpack.
    let (_umoci, rootfs) = dray_e2e::manager::umoci_rootfs(&format!("{name}:latest"));
    let ours: Vec<String> = tree_listing(std::path::Path::new(dir));
    let theirs = tree_listing(&rootfs);
    assert_eq!(ours, theirs, "the native snapshot differs from umoci's unpack");
    d.ok(&["rmi", &name]);
    assert!(d.snapshot_dirs().is_empty());
}

#[test]
fn ctrl_c_stops_a_pull_and_the_next_one_resumes() {
    let reg = Registry::start(&["big"]);
    let proxy = dray_e2e::manager::SlowProxy::start(reg.port, 2 << 20);
    let d = Daemon::start();
    let name = format!("127.0.0.1:{}/test/big:latest", proxy.port);
    let pull = d
        .ctl()
        .args(["pull", &name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ingest = d.data_root().join("content/ingest");
    let partial = || dray_e2e::manager::partial_download(&ingest);
    assert!(
        dray_e2e::manager::wait_until(std::time::Duration::from_secs(30), partial),
        "no partial download appeared"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pull.id() as i32, libc::SIGINT) };
    let o = pull.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("the next pull resumes it"), "{}", stderr(&o));
    // drayd saw the client go and stopped; the partial blob stays.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(partial(), "the partial download was not kept");
    assert_eq!(d.ok(&["images", "-q"]), "");
    d.ok(&["pull", "-q", &format!("{}/test/big:latest", reg.host())]);
    assert!(d.log().contains("resuming a download"), "{}", d.log());
    drop(proxy);
}

#[test]
fn a_terminal_gets_progress_bars_and_a_pipe_gets_plain_lines() {
    let reg = Registry::start(&["multi"]);
    let d = Daemon::start();
    let name = format!("{}/test/multi", reg.host());
    let cmd = format!(
        "DRAY_HOST=unix://{} {} pull {name}",
        d.socket().display(),
        dray_e2e::manager::drayctl_bin().display()
    );
    let o = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let tty = stdout(&o);
    assert!(tty.contains("\u{1b}["), "no terminal control sequences: {tty:?}");
    assert!(
        tty.contains("Pull complete") && tty.contains("Status: Downloaded newer image"),
        "{tty}"
    );
    // Plain output (the pipe of d.ok) has no control sequences and one line per step.
    d.ok(&["rmi", &name]);
    let plain = d.ok(&["pull", &name]);
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
    assert_eq!(
        plain.lines().filter(|l| l.ends_with(": Pull complete")).count(),
        3,
        "{plain}"
    );
}
