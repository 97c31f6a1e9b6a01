//! `process`: user, capabilities, rlimits, env, cwd, umask, oomScoreAdj, noNewPrivileges;
//! `hostname`, `domainname`, `linux.sysctl`.

use dray_e2e::*;
use serde_json::json;

fn status_field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} missing in {text}"))
        .trim()
        .to_string()
}

#[test]
fn hostname_pid_one_and_id() {
    let mut b = Bundle::new(
        "ident",
        &[
            "sh",
            "-c",
            "hostname; cat /proc/sys/kernel/domainname; echo $$; id -u; id -g; grep Groups /proc/self/status",
        ],
    );
    b.config["hostname"] = json!("box1");
    b.config["domainname"] = json!("example.org");
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "example.org");
    assert_eq!(lines[2], "1", "the container's process is pid 1");
    assert_eq!(lines[3], "1000");
    assert_eq!(lines[4], "1001");
    assert_eq!(lines[5].split_whitespace().skip(1).collect::<Vec<_>>(), ["10", "20"]);
}

#[test]
fn capabilities_all_five_sets() {
    let mut b = Bundle::new("caps", &["cat", "/proc/self/status"]);
    // CAP_CHOWN = 0, CAP_KILL = 5, CAP_NET_BIND_SERVICE = 10.
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_KILL"]
    });
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert_eq!(status_field(&s, "CapBnd"), "0000000000000421");
    assert_eq!(status_field(&s, "CapInh"), "0000000000000420");
    // A non-root exec keeps only the ambient capabilities in permitted and effective.
    assert_eq!(status_field(&s, "CapAmb"), "0000000000000020");
    assert_eq!(status_field(&s, "CapPrm"), "0000000000000020");
    assert_eq!(status_field(&s, "CapEff"), "0000000000000020");
}

#[test]
fn root_gets_the_bounding_set_and_nothing_more() {
    let mut b = Bundle::new("capsroot", &["cat", "/proc/self/status"]);
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN", "CAP_KILL"], "permitted": ["CAP_CHOWN", "CAP_KILL"]
    });
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert_eq!(status_field(&s, "CapBnd"), "0000000000000021");
    assert_eq!(status_field(&s, "CapEff"), "0000000000000021");
    assert_eq!(
        status_field(&s, "NoNewPrivs"),
        "1",
        "the default spec sets noNewPrivileges"
    );
}

#[test]
fn rlimits_are_seen_inside() {
    let mut b = Bundle::new(
        "rlimits",
        &[
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn; grep 'Max processes' /proc/self/limits",
        ],
    );
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 777, "hard": 888},
        {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600}
    ]);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "777");
    assert_eq!(l[1], "888");
    assert_eq!(l[2].split_whitespace().collect::<Vec<_>>()[2..4], ["500", "600"]);
}

#[test]
fn rlimit_above_the_hard_limit_is_a_clear_error() {
    if have_cap(24) {
        eprintln!("skipped: this host grants CAP_SYS_RESOURCE, so any hard limit can be raised");
        return;
    }
    let mut b = Bundle::new("rlimitbad", &["true"]);
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1_048_576u64, "hard": 1_048_576u64}]);
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("RLIMIT_NOFILE") && e.contains("CAP_SYS_RESOURCE"), "{e}");
    assert_no_leaks(&b);
}

#[test]
fn oom_score_adj() {
    let mut b = Bundle::new("oom", &["cat", "/proc/self/oom_score_adj"]);
    b.config["process"]["oomScoreAdj"] = json!(500);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "500");
    let mut b = Bundle::new("oomneg", &["cat", "/proc/self/oom_score_adj"]);
    b.config["process"]["oomScoreAdj"] = json!(-500);
    let o = b.run();
    if have_cap(24) {
        assert_eq!(stdout(&o).trim(), "-500");
    } else {
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("oomScoreAdj"), "{}", stderr(&o));
        assert_no_leaks(&b);
    }
}

#[test]
fn env_cwd_umask_and_home() {
    let mut b = Bundle::new("env", &["sh", "-c", "echo $FOO; pwd; umask; echo $HOME"]);
    b.config["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    b.config["process"]["cwd"] = json!("/tmp");
    b.config["process"]["user"]["umask"] = json!(0o077);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "bar baz\n/tmp\n0077\n/root\n");
}

#[test]
fn a_missing_executable_fails_create() {
    let b = Bundle::new("noexe", &["/no/such/binary"]);
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/no/such/binary"), "{}", stderr(&o));
    assert_no_leaks(&b);
    let b = Bundle::new("noexepath", &["nosuchcommand"]);
    let o = b.dray(&["create", &b.id.clone()]);
    assert!(stderr(&o).contains("executable file not found"), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn namespaced_sysctls_are_set_and_others_refused() {
    let mut b = Bundle::new(
        "sysctl",
        &["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni"],
    );
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    // /proc/sys is read-only in the default spec; sysctls are written before that.
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n1234\n");
    let mut b = Bundle::new("sysctlbad", &["true"]);
    b.config["linux"]["sysctl"] = json!({"vm.swappiness": "10"});
    let o = b.run();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("vm.swappiness"), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn a_new_session_keyring_unless_no_new_keyring() {
    let keys = || std::fs::read_to_string("/proc/keys").unwrap_or_default();
    if keys().is_empty() {
        eprintln!("skipped: no /proc/keys on this kernel");
        return;
    }
    let b = Bundle::new("keyring", &["sleep", "100"]);
    b.create();
    assert!(
        keys()
            .lines()
            .any(|l| l.ends_with(&format!("keyring   {}: empty", b.id)) || l.contains(&format!(" {}: ", b.id))),
        "no session keyring named {} in\n{}",
        b.id,
        keys()
    );
    b.cleanup();
    let b = Bundle::new("nokeyring", &["sleep", "100"]);
    let o = b.dray(&["create", "--no-new-keyring", &b.id.clone()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!keys().contains(&format!(" {}: ", b.id)));
    b.cleanup();
}

#[test]
fn no_capabilities_means_none_even_for_root() {
    let mut b = Bundle::new("nocaps", &["cat", "/proc/self/status"]);
    b.config["process"].as_object_mut().unwrap().remove("capabilities");
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    for set in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(status_field(&s, set), "0000000000000000", "{set}");
    }
    // No signal is left ignored by the runtime (Rust ignores SIGPIPE; the container must not).
    assert_eq!(status_field(&s, "SigIgn"), "0000000000000000");
}
