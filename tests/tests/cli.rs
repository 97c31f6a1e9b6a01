//! The command line as runc 1.1 presents it: help, version, usage errors and their exit codes
//! (issue 10, item 22), and `kill` with signal 0 (item 9).

use dray_e2e::*;
use std::process::Command;

fn dray(args: &[&str]) -> std::process::Output {
    Command::new(dray_bin()).args(args).output().unwrap()
}

#[test]
fn version_has_runc_s_lines() {
    let o = dray(&["--version"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("dray version "), "{out}");
    assert!(
        lines[1].starts_with("commit: ") && lines[1].len() > "commit: ".len(),
        "{out}"
    );
    assert!(lines[2].starts_with("spec: 1."), "{out}");
    assert_eq!(stdout(&dray(&["-v"])), out);
}

#[test]
fn help_usage_errors_and_unknown_commands_as_runc() {
    // No command: the help on stdout, success.
    let o = dray(&[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Usage:") && stderr(&o).is_empty(), "{}", stderr(&o));
    // -h and --help for dray and for every command: stdout, success.
    let commands = [
        "spec", "create", "start", "state", "kill", "delete", "run", "list", "exec", "pause", "resume", "update",
        "events", "ps", "features",
    ];
    for c in commands {
        for h in ["-h", "--help"] {
            let o = dray(&[c, h]);
            assert_eq!(o.status.code(), Some(0), "{c} {h}: {}", stderr(&o));
            assert!(stdout(&o).contains("Usage:"), "{c} {h}");
        }
        let o = dray(&["help", c]);
        assert_eq!(o.status.code(), Some(0), "help {c}");
    }
    // An unknown command: runc's message and status 3.
    let o = dray(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("level=error msg=\"No help topic for 'frobnicate'\""),
        "{}",
        stderr(&o)
    );
    // Missing arguments and unknown flags: "Incorrect Usage." and the command's help on
    // stdout, the reason on stderr, status 1.
    for args in [&["kill"][..], &["kill", "--bogus", "x"], &["delete"]] {
        let o = dray(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let out = stdout(&o);
        assert!(
            out.starts_with("Incorrect Usage.") && out.contains("Usage: dray"),
            "{args:?}: {out}"
        );
        assert!(stderr(&o).contains("level=error msg="), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn kill_with_signal_0_checks_that_the_container_runs() {
    let b = Bundle::new("kill0", &["sleep", "100"]);
    b.create();
    let o = b.dray(&["start", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [&["kill", &b.id, "0"][..], &["kill", "--all", &b.id, "0"]] {
        let o = b.dray(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    // Nothing was delivered: the process still runs.
    assert_eq!(b.status(), "running");
    let o = b.dray(&["kill", &b.id, "KILL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    b.wait_status("stopped");
    let o = b.dray(&["kill", &b.id, "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
    let o = b.dray(&["kill", &b.id, "-1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(b.dray(&["delete", &b.id]).status.success());
    assert_no_leaks(&b);
}

#[test]
fn run_keep_leaves_the_stopped_container_until_delete() {
    let b = Bundle::new("keep", &["sh", "-c", "exit 3"]);
    let o = b.dray(&["run", "--keep", "-b", b.dir.to_str().unwrap(), &b.id]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Still there, stopped, with its cgroup.
    assert_eq!(b.status(), "stopped");
    assert!(!cgroup_dirs(&b.id).is_empty(), "the cgroup went with the process");
    let o = b.dray(&["delete", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_leaks(&b);
    // Without --keep, run removes it.
    let b = Bundle::new("nokeep", &["true"]);
    let o = b.dray(&["run", "-b", b.dir.to_str().unwrap(), &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(b.dray(&["state", &b.id]).status.code(), Some(1));
    assert_no_leaks(&b);
}

#[test]
fn debug_lines_in_runcs_formats() {
    // runc's debug tests: `--debug` alone writes logrus text lines to stderr; with `--log` they
    // go to the file instead, as text or as JSON.
    let b = Bundle::new("debug", &["echo", "Hello World"]);
    let id = b.id.clone();
    let o = b.dray(&["--debug", "run", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Hello World\n");
    let err = stderr(&o);
    assert!(err.lines().count() > 3, "{err}");
    for l in err.lines() {
        assert!(l.starts_with("time=\"") && l.contains(" level=debug msg=\""), "{l}");
    }
    assert!(err.contains("timing create"), "{err}");
    for (format, needle) in [("text", "level=debug"), ("json", "\"level\":\"debug\"")] {
        let log = b.dir.join(format!("log.{format}"));
        let o = b.dray(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            format,
            "--debug",
            "run",
            &id,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!stderr(&o).contains("level=debug"), "{}", stderr(&o));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.lines().count() > 3 && text.lines().all(|l| l.contains(needle)),
            "{text}"
        );
        if format == "json" {
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(v["msg"].is_string() && v["time"].is_string(), "{l}");
            }
        }
    }
    // Without --debug: no debug lines, and errors stay short on a terminal's stderr.
    let o = b.dray(&["state", "nope"]);
    assert_eq!(stderr(&o).trim(), "dray: state nope: container \"nope\" does not exist");
}
