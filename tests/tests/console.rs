//! `process.terminal` with `--console-socket`: the pty master arrives over the socket and is a
//! working terminal for the container.

use dray_e2e::*;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

fn recv_fd(sock: i32) -> OwnedFd {
    recv_with_fd(sock).1.expect("no fd received")
}

#[test]
fn console_socket_receives_a_working_pty() {
    let mut b = Bundle::new(
        "tty",
        &[
            "sh",
            "-c",
            "tty; test -t 0 && echo stdin-is-a-tty; stty size; read line; echo got:$line",
        ],
    );
    b.config["process"]["terminal"] = serde_json::json!(true);
    b.config["process"]["consoleSize"] = serde_json::json!({"height": 30, "width": 100});
    let sock = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = b.id.clone();
    let cmd = b.cmd(&["create", "--console-socket", sock.to_str().unwrap(), &id]);
    let creator = std::thread::spawn(move || run_with_timeout(cmd, Duration::from_secs(30)));
    let (conn, _) = listener.accept().unwrap();
    let master = recv_fd(conn.as_raw_fd());
    let o = creator.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(b.dray(&["start", &b.id]).status.success());
    let mut f = std::fs::File::from(master);
    f.write_all(b"hello\n").unwrap();
    let mut out = Vec::new();
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&out).contains("got:hello") {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no output: {}",
            String::from_utf8_lossy(&out)
        );
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("stdin-is-a-tty"), "{out}");
    assert!(out.contains("30 100"), "{out}");
    assert!(out.contains("got:hello"), "{out}");
    b.wait_status("stopped");
    b.cleanup();
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let mut b = Bundle::new("ttynosock", &["true"]);
    b.config["process"]["terminal"] = serde_json::json!(true);
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("console-socket"), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn foreground_run_with_a_terminal_relays_the_pty() {
    // Without --console-socket, `run` allocates the pty itself and relays it to its stdio.
    let mut b = Bundle::new(
        "ttyrun",
        &["sh", "-c", "tty; test -t 1 && echo stdout-is-a-tty; exit 3"],
    );
    b.config["process"]["terminal"] = serde_json::json!(true);
    let o = b.run();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stdout(&o).replace('\r', "");
    assert!(out.contains("/dev/pts/0\nstdout-is-a-tty\n"), "{out:?}");
    assert_no_leaks(&b);
}

#[test]
fn the_terminal_belongs_to_the_process_user() {
    // runc (issue 10, item 14): the pty slave is owned by the process's uid; its group stays
    // the devpts mount's (gid=5, tty). `exec` sets its terminal up through the same code.
    let mut b = Bundle::new("ttyowner", &["sh", "-c", "stat -c %u:%g $(tty)"]);
    b.config["process"]["terminal"] = serde_json::json!(true);
    b.config["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 100});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).replace('\r', "").trim(), "1000:5");
    assert_no_leaks(&b);
}

#[test]
fn exec_tty_honours_console_size_and_the_user() {
    // Issue 10, item 14: `exec --tty` (here through --process) sizes the terminal from
    // consoleSize, and the pty belongs to the exec'd process's uid.
    let mut b = Bundle::new("exectty", &["sleep", "100"]);
    b.config["process"]["terminal"] = serde_json::json!(false);
    b.create();
    assert!(b.dray(&["start", &b.id]).status.success());
    let proc_file = b.dir.join("exec-process.json");
    let process = serde_json::json!({
        "terminal": true,
        "consoleSize": {"height": 40, "width": 120},
        "user": {"uid": 1000, "gid": 100},
        "args": ["sh", "-c", "stat -c owner=%u:%g $(tty); stty size"],
        "env": ["PATH=/bin:/usr/bin"],
        "cwd": "/"
    });
    std::fs::write(&proc_file, serde_json::to_vec(&process).unwrap()).unwrap();
    let sock = b.dir.join("exec-console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let cmd = b.cmd(&[
        "exec",
        "--process",
        proc_file.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        &b.id,
    ]);
    let execer = std::thread::spawn(move || run_with_timeout(cmd, Duration::from_secs(30)));
    let (conn, _) = listener.accept().unwrap();
    let master = recv_fd(conn.as_raw_fd());
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let t = Instant::now();
    while !String::from_utf8_lossy(&out).contains("40 120") && t.elapsed() < Duration::from_secs(20) {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let o = execer.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    assert!(out.contains("owner=1000:5"), "{out}");
    assert!(out.contains("40 120"), "{out}");
    b.cleanup();
}
