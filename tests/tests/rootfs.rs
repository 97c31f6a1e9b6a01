//! `root`, `mounts`, `/dev`, `linux.devices`, `maskedPaths`, `readonlyPaths`, `--no-pivot`,
//! and mount targets that the image tries to redirect.

use dray_e2e::*;
use serde_json::json;

fn mountinfo_line<'a>(mi: &'a str, mountpoint: &str) -> Option<&'a str> {
    mi.lines().find(|l| l.split(' ').nth(4) == Some(mountpoint))
}

#[test]
fn default_mounts_are_in_place() {
    let b = Bundle::new("mounts", &["cat", "/proc/self/mountinfo"]);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let mi = stdout(&o);
    for (mp, fs) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
        ("/sys/fs/cgroup", ""),
    ] {
        let l = mountinfo_line(&mi, mp).unwrap_or_else(|| panic!("{mp} not mounted:\n{mi}"));
        assert!(l.contains(&format!(" - {fs}")), "{mp}: {l}");
    }
    let sys = mountinfo_line(&mi, "/sys").unwrap();
    assert!(
        sys.split(' ').nth(5).unwrap().starts_with("ro"),
        "/sys must be read-only: {sys}"
    );
    // Only the container's own files are visible: no host mount made it in.
    assert!(!mi.contains(" /run/dray"), "{mi}");
}

#[test]
fn cgroup_mount_shows_the_container_cgroup_read_only() {
    let b = Bundle::new(
        "cgmount",
        &[
            "sh",
            "-c",
            "ls /sys/fs/cgroup; cat /sys/fs/cgroup/memory/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup/cgroup.procs; \
             touch /sys/fs/cgroup/x 2>&1; mkdir /sys/fs/cgroup/pids/sub 2>&1 || mkdir /sys/fs/cgroup/sub 2>&1; \
             grep ' /sys/fs/cgroup' /proc/self/mountinfo",
        ],
    );
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // The container's only process is its pid 1.
    assert!(out.lines().any(|l| l == "1"), "{out}");
    // Neither the tmpfs nor the cgroup directories bound into it can be written.
    assert!(out.matches("Read-only file system").count() >= 2, "{out}");
    let mounts: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" /sys/fs/cgroup") && l.contains(" - "))
        .collect();
    assert!(!mounts.is_empty(), "{out}");
    for l in mounts {
        let opts = l.split(' ').nth(5).unwrap();
        for o in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(opts.split(',').any(|x| x == o), "{o} missing: {l}");
        }
    }
    // An atime option takes the one-remount-per-mount path: the same result, with noatime.
    let mut b = Bundle::new("cgmount2", &["grep", " /sys/fs/cgroup", "/proc/self/mountinfo"]);
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["type"] == "cgroup" {
            m["options"] = json!(["nosuid", "noexec", "nodev", "noatime", "ro"]);
        }
    }
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.is_empty(), "{out}");
    for l in out.lines() {
        let opts = l.split(' ').nth(5).unwrap();
        for o in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
            assert!(opts.split(',').any(|x| x == o), "{o} missing: {l}");
        }
    }
}

#[test]
fn readonly_root_and_readonly_paths() {
    let mut b = Bundle::new(
        "ro",
        &[
            "sh",
            "-c",
            "touch /x 2>&1; { echo 1 > /proc/sys/kernel/ostype; } 2>&1; touch /tmp/y 2>&1; true",
        ],
    );
    b.config["root"]["readonly"] = json!(true);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "only / and /proc/sys refuse writes; /tmp is a writable tmpfs: {out}"
    );
    assert!(lines.iter().all(|l| l.contains("Read-only file system")), "{out}");
}

#[test]
fn masked_paths_are_unreadable() {
    let b = Bundle::new("masked", &["sh", "-c", "echo firmware $(ls /sys/firmware | wc -l); for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $f ] && echo \"$f $(cat $f | wc -c)\"; done; true"]);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // Masked files that exist on this kernel read as empty; the masked directory is empty.
    assert!(out.lines().count() >= 2, "{out}");
    assert!(
        out.lines().all(|l| l.ends_with(" 0")),
        "masked paths must show nothing: {out}"
    );
}

#[test]
fn default_devices_and_linux_devices() {
    let mut b = Bundle::new("devices", &["sh", "-c", "for d in null zero full random urandom tty mydev sub/other sgid blk fifo unbuf; do stat -c '%n %F %t:%T %a %u %g' /dev/$d; done; for l in ptmx fd stdin stdout stderr; do readlink /dev/$l; done; head -c 4 /dev/zero | wc -c"]);
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 0, "gid": 0},
        {"path": "/dev/sub/other", "type": "c", "major": 1, "minor": 5, "fileMode": 0o640, "uid": 1000, "gid": 1001},
        {"path": "/dev/sgid", "type": "c", "major": 1, "minor": 7, "fileMode": 0o2660, "uid": 0, "gid": 5},
        // The validation suite's set: a block node for a device that does not exist, a FIFO
        // with a major/minor (which the kernel ignores for FIFOs), and an unbuffered char node.
        {"path": "/dev/blk", "type": "b", "major": 8, "minor": 666, "fileMode": 0o432, "uid": 2, "gid": 3},
        {"path": "/dev/fifo", "type": "p", "major": 8, "minor": 666, "fileMode": 0o644, "uid": 4, "gid": 5},
        {"path": "/dev/unbuf", "type": "u", "major": 1, "minor": 9, "fileMode": 0o600}
    ]);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "/dev/null character special file 1:3 666 0",
        "/dev/zero character special file 1:5 666",
        "/dev/full character special file 1:7",
        "/dev/random character special file 1:8",
        "/dev/urandom character special file 1:9",
        "/dev/tty character special file 5:0",
        "/dev/mydev character special file 1:3 600 0 0",
        "/dev/sub/other character special file 1:5 640 1000 1001",
        "/dev/sgid character special file 1:7 2660 0 5",
        "/dev/blk block special file 8:29a 432 2 3",
        "/dev/fifo fifo 0:0 644 4 5",
        "/dev/unbuf character special file 1:9 600 0 0",
        "pts/ptmx",
        "/proc/self/fd\n",
        "/proc/self/fd/0",
        "/proc/self/fd/1",
        "/proc/self/fd/2",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(out.ends_with("4\n"));
}

#[test]
fn bind_mounts_with_options_and_propagation() {
    let mut b = Bundle::new(
        "bind",
        &[
            "sh",
            "-c",
            "cat /data/f; touch /data/g 2>&1; cat /file; grep ' /data ' /proc/self/mountinfo",
        ],
    );
    let host = b.dir.join("hostdata");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "hello\n").unwrap();
    std::fs::write(b.dir.join("hostfile"), "file\n").unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": host, "options": ["rbind", "ro", "nosuid", "rprivate"]}));
    // A relative source is relative to the bundle; a file over a missing target creates it.
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/file", "type": "bind", "source": "hostfile", "options": ["bind"]}));
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("hello\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("file\n"), "{out}");
    let l = out.lines().last().unwrap();
    let opts = l.split(' ').nth(5).unwrap();
    assert!(opts.contains("ro") && opts.contains("nosuid"), "{l}");
    assert!(!l.contains("shared:") && !l.contains("master:"), "rprivate: {l}");
}

#[test]
fn mount_targets_cannot_be_redirected_outside_the_rootfs() {
    let mut b = Bundle::new("symlink", &["sh", "-c", "grep tmpfs /proc/self/mountinfo"]);
    let outside = b.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // The image points /evil at an absolute host path, and /up at the rootfs' parent.
    std::os::unix::fs::symlink(&outside, b.dir.join("rootfs/evil")).unwrap();
    std::os::unix::fs::symlink("../../..", b.dir.join("rootfs/up")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/up/esc", "type": "tmpfs", "source": "tmpfs", "options": ["size=2m"]}));
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "something was created outside the rootfs"
    );
    assert!(
        !b.dir.join("esc").exists() && !std::path::Path::new("/esc").exists(),
        "a target escaped through .."
    );
    let out = stdout(&o);
    // Both mounts landed inside the container's tree.
    assert!(out.contains(&format!(" {}/sub ", outside.display())), "{out}");
    assert!(out.contains(" /esc "), "{out}");
}

#[test]
fn no_pivot_uses_move_and_chroot() {
    let b = Bundle::new(
        "nopivot",
        &["sh", "-c", "ls /bin/busybox && cat /proc/self/mountinfo | wc -l"],
    );
    let o = run_with_timeout(b.cmd(&["run", "--no-pivot", &b.id]), std::time::Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("/bin/busybox"));
    assert_no_leaks(&b);
}

#[test]
fn a_bad_mount_fails_cleanly() {
    let mut b = Bundle::new("badmount", &["true"]);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}));
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/x"), "{}", stderr(&o));
    assert_no_leaks(&b);
    // First in the list: the init fails while the runtime is still making its cgroups, and
    // its reason is what create reports.
    let mut b = Bundle::new("badmount0", &["true"]);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"destination": "/y", "type": "nosuchfs", "source": "none"}));
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mount /y (nosuchfs)"), "{}", stderr(&o));
    assert_no_leaks(&b);
    let mut b = Bundle::new("badbind", &["true"]);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "bind", "source": "/no/such/source", "options": ["bind"]}));
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/no/such/source"), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn recursive_read_only_bind_and_tmpcopyup() {
    let mut b = Bundle::new(
        "rro",
        &[
            "sh",
            "-c",
            "touch /data/sub/x 2>&1; cat /etc2/hello; stat -c '%a' /etc2; touch /etc2/new && echo tmpfs-writable",
        ],
    );
    let host = b.dir.join("hostdata");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    // A submount below the bind: `ro` would leave it writable, `rro` does not.
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(host.join("sub"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir_all(b.dir.join("rootfs/etc2")).unwrap();
    std::fs::write(b.dir.join("rootfs/etc2/hello"), "from-image\n").unwrap();
    std::fs::set_permissions(
        b.dir.join("rootfs/etc2"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/data", "type": "bind", "source": host, "options": ["rbind", "rro"]}));
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/etc2", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}));
    let o = b.run();
    let _ = std::process::Command::new("umount").arg(host.join("sub")).status();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        out,
        "touch: /data/sub/x: Read-only file system\nfrom-image\n750\ntmpfs-writable\n"
    );
    // The image's file is untouched under the tmpfs.
    assert!(!b.dir.join("rootfs/etc2/new").exists());
}

#[test]
fn dev_is_read_only_when_its_mount_says_ro() {
    // runc: a /dev mount with `ro` ends read-only, device nodes in place (issue 10, item 11).
    let mut b = Bundle::new(
        "devro",
        &["sh", "-c", "grep ' /dev ' /proc/self/mounts > /out/mount; test -c /dev/null && echo nodes > /out/nodes; touch /dev/x 2> /out/err; echo $? > /out/rc"],
    );
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"].as_array_mut().unwrap().push(json!("ro"));
        }
    }
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let mount = std::fs::read_to_string(b.out().join("mount")).unwrap();
    assert!(
        mount.split_whitespace().nth(3).unwrap().split(',').any(|o| o == "ro"),
        "{mount}"
    );
    assert_eq!(std::fs::read_to_string(b.out().join("nodes")).unwrap(), "nodes\n");
    assert_ne!(std::fs::read_to_string(b.out().join("rc")).unwrap().trim(), "0");
    assert!(std::fs::read_to_string(b.out().join("err"))
        .unwrap()
        .contains("Read-only"));
}

#[test]
fn rootfs_propagation_takes_every_value_the_spec_allows() {
    // The container's `/` line of mountinfo, then a recursive bind of `/`, which an unbindable
    // root refuses (the runtime validation suite's check).
    let script = "awk '$5 == \"/\"' /proc/self/mountinfo; mkdir -p /tmp/b; mount --rbind / /tmp/b 2>/dev/null && echo bound || echo refused";
    for (value, field) in [
        ("shared", "shared:"),
        ("rshared", "shared:"),
        ("slave", ""),
        ("rslave", ""),
        ("private", ""),
        ("rprivate", ""),
        ("unbindable", "unbindable"),
        ("runbindable", "unbindable"),
    ] {
        let mut b = Bundle::new("rprop", &["sh", "-c", script]);
        let caps = json!(["CAP_SYS_ADMIN"]);
        b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
        b.config["linux"]["rootfsPropagation"] = json!(value);
        let o = b.run();
        assert!(o.status.success(), "{value}: {}", stderr(&o));
        let out = stdout(&o);
        let root = out.lines().next().unwrap_or_default();
        let optional = root.split(" - ").next().unwrap_or_default();
        if field.is_empty() {
            assert!(
                !optional.contains("shared:") && !optional.contains("unbindable"),
                "{value}: {root}"
            );
        } else {
            assert!(optional.contains(field), "{value}: {root}");
        }
        let want = if field == "unbindable" { "refused" } else { "bound" };
        assert!(out.ends_with(&format!("{want}\n")), "{value}: {out}");
        assert_no_leaks(&b);
    }
}

fn without_mount_namespace(b: &mut Bundle) {
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "mount");
}

#[test]
fn without_a_mount_namespace_the_runtimes_is_shared() {
    // runtime-spec: a namespace that is not listed is the runtime's. The process still gets its
    // rootfs, mounts and masked paths (in the shared namespace, under a bind that delete
    // detaches), and nothing stays on the host afterwards.
    let mut b = Bundle::new(
        "nomntns",
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/mnt; ls /bin/busybox; ls /sys/firmware | wc -l; ls /out",
        ],
    );
    without_mount_namespace(&mut b);
    std::fs::write(b.out().join("marker"), "").unwrap();
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_eq!(stdout(&o), format!("{}\n/bin/busybox\n0\nmarker\n", ours.display()));
    assert_no_leaks(&b);

    // Detached: the container is running, its mounts are visible on the host, `exec` enters
    // its root too, delete removes them.
    let mut b = Bundle::new("nomntns-d", &["sleep", "60"]);
    without_mount_namespace(&mut b);
    std::fs::write(b.dir.join("rootfs/only-here"), "inside\n").unwrap();
    b.create();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mi.contains(&format!("{}/rootfs/proc ", b.dir.display())), "{mi}");
    let o = b.dray(&["exec", &b.id.clone(), "cat", "/only-here"]);
    assert_eq!(stdout(&o), "inside\n", "{}", stderr(&o));
    b.cleanup();

    // Failures after the bind (a missing program, found after the chroot) and during the
    // mounts leave nothing either.
    let mut b = Bundle::new("nomntns-f", &["/no/such/program"]);
    without_mount_namespace(&mut b);
    let o = b.run();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/no/such/program"), "{}", stderr(&o));
    assert_no_leaks(&b);
    let mut b = Bundle::new("nomntns-m", &["true"]);
    without_mount_namespace(&mut b);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]}));
    let o = b.run();
    assert!(!o.status.success());
    assert_no_leaks(&b);
}

#[test]
fn a_mount_namespace_joined_by_path_gets_the_rootfs() {
    // A namespace made by someone else (here `unshare`), joined through its path: the rootfs is
    // set up in it and the process chrooted (pivot_root would move every process of it).
    let mut holder = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "120"])
        .spawn()
        .unwrap();
    let ns = format!("/proc/{}/ns/mnt", holder.id());
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let t = std::time::Instant::now();
    while std::fs::read_link(&ns).map(|l| l == ours).unwrap_or(true) {
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let theirs = std::fs::read_link(&ns).unwrap();
    let mut b = Bundle::new("joinmnt", &["sleep", "60"]);
    for n in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "mount" {
            n["path"] = json!(ns);
        }
    }
    let o = b.dray(&["run", "-d", &b.id.clone()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // `exec` joins the namespace and enters the container's root in it.
    let o = b.dray(&[
        "exec",
        &b.id.clone(),
        "sh",
        "-c",
        "readlink /proc/self/ns/mnt; ls /bin/busybox; ls /sys/firmware | wc -l",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n/bin/busybox\n0\n", theirs.display()));
    b.cleanup();
    // Deleting the container detached its mounts in the joined namespace too.
    let mi = std::fs::read_to_string(format!("/proc/{}/mountinfo", holder.id())).unwrap();
    assert!(!mi.contains(&*b.dir.to_string_lossy()), "{mi}");
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn a_shared_mount_namespace_never_reaches_the_hosts_mounts() {
    // A container without a mount namespace binds a shared host tree (with a mount inside it)
    // and mounts a tmpfs under the bind: nothing of it may appear on the host, and deleting
    // the container must not unmount the host's own mounts (an unmount propagates to peers).
    let host = std::env::temp_dir().join(format!("dray-shared-src-{}", std::process::id()));
    std::fs::create_dir_all(&host).unwrap();
    let sh = |c: &str| {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", c])
                .status()
                .unwrap()
                .success(),
            "{c}"
        )
    };
    let h = host.display();
    sh(&format!("mount -t tmpfs src {h} && mount --make-shared {h} && mkdir {h}/inner {h}/sub && mount -t tmpfs inner {h}/inner"));
    let mut b = Bundle::new("sharedsrc", &["sleep", "60"]);
    without_mount_namespace(&mut b);
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/data", "type": "bind", "source": host, "options": ["rbind"]}));
    mounts.push(json!({"destination": "/data/sub", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    b.create();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let on_host = |p: &str| mi.lines().any(|l| l.split(' ').nth(4) == Some(p));
    assert!(on_host(&format!("{h}/inner")), "{mi}");
    assert!(
        !on_host(&format!("{h}/sub")),
        "the container's tmpfs reached the host: {mi}"
    );
    b.cleanup();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let still = mi.lines().any(|l| l.split(' ').nth(4) == Some(&*format!("{h}/inner")));
    sh(&format!("umount -R {h}; rmdir {h}"));
    assert!(still, "delete unmounted the host's own mount");
}

#[test]
fn a_read_only_tmpfs_is_filled_before_it_is_made_read_only() {
    // One mechanism (issue 11, item 2): a read-only tmpfs gets its tmpcopyup contents and the
    // mount points of mounts nested in it first; /dev its device nodes. The remount keeps the
    // entry's other flags (nosuid on /dev was lost before).
    let mut b = Bundle::new(
        "rolater",
        &[
            "sh",
            "-c",
            "grep -E ' /(dev|srv|srv/inner) ' /proc/self/mounts > /out/mounts; cat /srv/hello > /out/hello; \
             touch /srv/new 2> /out/err; echo $? > /out/rc; touch /srv/inner/ok && echo writable > /out/inner",
        ],
    );
    std::fs::create_dir_all(b.dir.join("rootfs/srv")).unwrap();
    std::fs::write(b.dir.join("rootfs/srv/hello"), "from-image\n").unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    for m in mounts.iter_mut() {
        if m["destination"] == "/dev" {
            m["options"].as_array_mut().unwrap().push(json!("ro"));
        }
    }
    mounts.push(
        json!({"destination": "/srv", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nodev", "rnoexec", "tmpcopyup"]}),
    );
    mounts.push(json!({"destination": "/srv/inner", "type": "tmpfs", "source": "tmpfs"}));
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(b.out().join("mounts")).unwrap();
    let opts = |mp: &str| -> Vec<String> {
        let l = text
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(mp))
            .unwrap_or_else(|| panic!("{mp} not mounted: {text}"));
        l.split(' ').nth(3).unwrap().split(',').map(String::from).collect()
    };
    let dev = opts("/dev");
    assert!(
        dev.iter().any(|o| o == "ro") && dev.iter().any(|o| o == "nosuid"),
        "{dev:?}"
    );
    let srv = opts("/srv");
    assert!(
        ["ro", "nodev", "noexec"].iter().all(|f| srv.iter().any(|o| o == f)),
        "{srv:?}"
    );
    assert!(opts("/srv/inner").iter().any(|o| o == "rw"));
    assert_eq!(std::fs::read_to_string(b.out().join("hello")).unwrap(), "from-image\n");
    assert_ne!(std::fs::read_to_string(b.out().join("rc")).unwrap().trim(), "0");
    assert!(std::fs::read_to_string(b.out().join("err"))
        .unwrap()
        .contains("Read-only"));
    assert_eq!(std::fs::read_to_string(b.out().join("inner")).unwrap(), "writable\n");
    assert!(!b.dir.join("rootfs/srv/new").exists());
}

#[test]
fn an_invalid_spec_is_refused_before_anything_is_made() {
    // crate::validate (issue 11, item 1): each of these is found before the fork, so create
    // fails with the field named and leaves no process, cgroup, mount or state behind.
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 8] = [
        (
            "relative destination",
            |c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "data", "type": "tmpfs", "source": "tmpfs"}))
            },
            "mount data: the destination is not absolute",
        ),
        (
            "bind without source",
            |c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "/data", "type": "bind", "options": ["rbind"]}))
            },
            "mount /data: a bind mount needs a source",
        ),
        (
            "idmap",
            |c| {
                c["mounts"].as_array_mut().unwrap().push(
                    json!({"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]}),
                )
            },
            "idmapped mounts",
        ),
        (
            "env without =",
            |c| c["process"]["env"] = json!(["PATH=/bin", "NOEQUALS"]),
            "missing '='",
        ),
        (
            "NUL in args",
            |c| c["process"]["args"] = json!(["true", "a\u{0}b"]),
            "process.args[1] contains a NUL byte",
        ),
        (
            "hostname without UTS",
            |c| {
                c["hostname"] = json!("box");
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "uts");
            },
            "setting the hostname needs a private UTS namespace",
        ),
        (
            "time offsets clock",
            |c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "time"}));
                c["linux"]["timeOffsets"] = json!({"realtime": {"secs": 1}});
            },
            "unknown clock \"realtime\"",
        ),
        (
            "device outside /dev",
            |c| c["linux"]["devices"] = json!([{"path": "/etc/x", "type": "c", "major": 1, "minor": 3}]),
            "is not a path under /dev",
        ),
    ];
    for (i, (what, edit, needle)) in cases.iter().enumerate() {
        let mut b = Bundle::new(&format!("invalid{i}"), &["true"]);
        edit(&mut b.config);
        let o = b.dray(&["create", &b.id.clone()]);
        assert_eq!(o.status.code(), Some(1), "{what}");
        assert!(stderr(&o).contains(needle), "{what}: {}", stderr(&o));
        assert_no_leaks(&b);
    }
}
