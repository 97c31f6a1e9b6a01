//! Hooks run at the times the runtime spec gives, with the state on stdin, their env, args and
//! timeout; failures abort (or only warn, for poststart and poststop).

use dray_e2e::*;
use serde_json::{json, Value};

fn hook(log: &str, phase: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo \"$0 $FOO $(cat)\" >> {log}"), phase], "env": ["FOO=foo-env"]})
}

#[test]
fn all_six_hooks_run_in_order_with_the_state() {
    let mut b = Bundle::new("hooks", &["sh", "-c", "echo process >> /out/hooks.log"]);
    let log = b.out().join("hooks.log");
    let host = log.to_str().unwrap();
    b.config["hooks"] = json!({
        "prestart": [hook(host, "prestart")],
        "createRuntime": [hook(host, "createRuntime")],
        "createContainer": [hook(host, "createContainer")],
        "startContainer": [hook("/out/hooks.log", "startContainer")],
        "poststart": [hook(host, "poststart")],
        "poststop": [hook(host, "poststop")]
    });
    b.create();
    let pid = b.state()["pid"].as_i64().unwrap();
    assert!(b.dray(&["start", &b.id]).status.success());
    b.wait_status("stopped");
    assert!(b.dray(&["delete", &b.id]).status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let phases: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    // poststart runs after the process started; it may finish before or after the process.
    let mut sorted = phases.clone();
    sorted.retain(|p| *p != "poststart");
    assert_eq!(
        sorted,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "process",
            "poststop"
        ],
        "{text}"
    );
    assert!(phases.contains(&"poststart"), "{text}");
    for l in text.lines().filter(|l| !l.starts_with("process")) {
        let mut parts = l.splitn(3, ' ');
        let (phase, env, state) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(env, "foo-env", "{phase} got no env");
        let st: Value = serde_json::from_str(state).unwrap_or_else(|e| panic!("{phase}: bad state {state}: {e}"));
        assert_eq!(st["id"], b.id.as_str(), "{phase}");
        assert_eq!(st["bundle"], b.dir.to_str().unwrap(), "{phase}");
        assert!(st["ociVersion"].is_string());
        let want_status = match phase {
            // As runc: the create-time hooks all see "creating".
            "prestart" | "createRuntime" | "createContainer" => "creating",
            "startContainer" => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        assert_eq!(st["status"], want_status, "{phase}");
        if phase != "poststop" {
            assert_eq!(st["pid"].as_i64().unwrap(), pid, "{phase}");
        }
    }
    assert_no_leaks(&b);
}

/// runtime-spec: poststart hooks run after the user's process was executed: the container's
/// pid then runs the user's program, not the runtime's init or its trampoline.
#[test]
fn poststart_sees_the_users_process() {
    let mut b = Bundle::new("poststart", &["sleep", "2"]);
    let log = b.out().join("cmdline");
    let script = format!("pid=$(jq .pid); tr '\\0' ' ' < /proc/$pid/cmdline > {}", log.display());
    // A slow startContainer hook (it runs in the init, just before the exec) makes the
    // window wide: a poststart run at the start signal would see the init, not `sleep 2`.
    b.config["hooks"] = json!({
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 0.3"]}],
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]
    });
    b.create();
    assert!(b.dray(&["start", &b.id]).status.success());
    let seen = std::fs::read_to_string(&log).unwrap();
    assert_eq!(seen.trim(), "sleep 2", "poststart saw {seen:?}");
    let _ = b.dray(&["kill", &b.id, "KILL"]);
    b.wait_status("stopped");
    assert!(b.dray(&["delete", &b.id]).status.success());
    assert_no_leaks(&b);
}

/// runc gives createContainer hooks the rootfs as their working directory: a file a hook
/// writes relative to it is in the container's root.
#[test]
fn create_container_hooks_run_in_the_rootfs() {
    let mut b = Bundle::new("hookcwd", &["cat", "/made-by-hook"]);
    b.config["hooks"] = json!({
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "pwd > made-by-hook"]}]
    });
    let o = b.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cwd = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(cwd.ends_with("rootfs"), "the hook ran in {cwd:?}");
    assert_no_leaks(&b);
}

#[test]
fn a_failing_hook_aborts_create_and_cleans_up() {
    for phase in ["prestart", "createRuntime", "createContainer"] {
        let mut b = Bundle::new("hookfail", &["true"]);
        b.config["hooks"] = json!({ phase: [{"path": "/bin/false"}] });
        let o = b.dray(&["create", &b.id.clone()]);
        assert_eq!(o.status.code(), Some(1), "{phase}");
        assert!(
            stderr(&o).contains(phase) && stderr(&o).contains("exited with status 1"),
            "{}",
            stderr(&o)
        );
        assert_no_leaks(&b);
    }
}

#[test]
fn a_hook_that_times_out_fails_create() {
    let mut b = Bundle::new("hooktimeout", &["true"]);
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let t = std::time::Instant::now();
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn failing_poststart_and_poststop_only_warn() {
    let mut b = Bundle::new("hookwarn", &["true"]);
    b.config["hooks"] = json!({"poststart": [{"path": "/bin/false"}], "poststop": [{"path": "/bin/false"}]});
    let o = b.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("poststart hook #0 failed") && stderr(&o).contains("poststop hook #0 failed"),
        "{}",
        stderr(&o)
    );
    assert_no_leaks(&b);
}
