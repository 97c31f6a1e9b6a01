//! Networks end to end: every drayd here runs in a network namespace the test made
//! (`ip netns`), with its bridges, veths, addresses and packet filter rules inside it; traffic
//! goes only to addresses in there (its loopback, a dummy interface, a second namespace the
//! test links to it with a veth pair). The real CNI plugins (Debian's
//! containernetworking-plugins), nftables and iptables do the work.

use std::process::Command;
use std::time::Duration;

use dray_e2e::manager::{in_netns, new_netns, stderr, stdout, wait_until, Daemon};

fn daemon() -> Daemon {
    let d = Daemon::start_isolated();
    d.load_busybox();
    d
}

fn ns(d: &Daemon) -> String {
    d.netns.clone().expect("an isolated daemon")
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip");
    assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
}

/// A second namespace ("outside"), linked to drayd's by a veth pair: drayd's side is
/// 198.51.100.1/24, the outside 198.51.100.2/24 (TEST-NET-2, only in these namespaces).
struct Outside(String);

impl Outside {
    fn link(d: &Daemon) -> Outside {
        let out = new_netns();
        let inner = ns(d);
        ip(&[
            "link", "add", "vout", "netns", &out, "type", "veth", "peer", "name", "vin", "netns", &inner,
        ]);
        ip(&["-n", &inner, "addr", "add", "198.51.100.1/24", "dev", "vin"]);
        ip(&["-n", &inner, "link", "set", "vin", "up"]);
        ip(&["-n", &out, "addr", "add", "198.51.100.2/24", "dev", "vout"]);
        ip(&["-n", &out, "link", "set", "vout", "up"]);
        Outside(out)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

/// curl of `url` from namespace `ns`; the body, or None.
fn fetch(ns: &str, url: &str) -> Option<String> {
    let o = in_netns(ns, "curl")
        .args(["-s", "--max-time", "3", url])
        .output()
        .expect("curl");
    o.status.success().then(|| stdout(&o))
}

/// What drayd's network leaves in its namespace and data root: links, CNI cache entries,
/// IPAM reservations, namespace files, and the packet filter rules (without counters).
#[derive(Debug, PartialEq, Eq)]
struct NetState {
    links: Vec<String>,
    cache: Vec<String>,
    ipam: Vec<String>,
    netns: Vec<String>,
    rules: Vec<String>,
}

fn net_state(d: &Daemon) -> NetState {
    let n = ns(d);
    let links = Command::new("ip").args(["-n", &n, "-o", "link"]).output().expect("ip");
    let links: Vec<String> = stdout(&links)
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
        })
        .collect();
    let list = |p: std::path::PathBuf| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let cache = list(d.data_root().join("network/cni-cache/results"));
    let mut ipam = Vec::new();
    for net in list(d.data_root().join("network/ipam")) {
        for f in list(d.data_root().join("network/ipam").join(&net)) {
            if f != "lock" && !f.starts_with("last_reserved_ip") {
                ipam.push(format!("{net}/{f}"));
            }
        }
    }
    let netns = list(d.exec_root().join("netns"));
    let rules = in_netns(&n, "iptables-save").output().expect("iptables-save");
    let rules: Vec<String> = stdout(&rules)
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(String::from)
        .collect();
    NetState {
        links,
        cache,
        ipam,
        netns,
        rules,
    }
}

#[test]
fn published_ports_reach_httpd_from_loopback_and_from_outside() {
    let d = daemon();
    let n = ns(&d);
    let out = Outside::link(&d);
    let www = d.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from httpd\n").unwrap();
    let vol = format!("{}:/www:ro", www.display());
    // As on a host where docker set the FORWARD policy to drop: drayd's accepts must carry
    // the containers' traffic.
    let st = in_netns(&n, "iptables")
        .args(["-P", "FORWARD", "DROP"])
        .status()
        .unwrap();
    assert!(st.success());
    let before = net_state(&d);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:8081:80",
        "--expose",
        "81",
        "-P",
        "-v",
        &vol,
        "busybox",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(wait_until(Duration::from_secs(5), || fetch(
        &n,
        "http://127.0.0.1:8080/"
    )
    .is_some()));
    // The host's loopback, its own address, and from outside through the veth.
    assert_eq!(
        fetch(&n, "http://127.0.0.1:8080/").as_deref(),
        Some("hello from httpd\n")
    );
    assert_eq!(
        fetch(&n, "http://198.51.100.1:8080/").as_deref(),
        Some("hello from httpd\n")
    );
    assert_eq!(
        fetch(&out.0, "http://198.51.100.1:8080/").as_deref(),
        Some("hello from httpd\n")
    );
    // The traffic shows in `stats` (docker's NET I/O: every interface but loopback).
    let io = d.ok(&["stats", "--no-stream", "--format", "{{.NetIO}}", "web"]);
    assert!(!io.starts_with("0B / "), "{io}");
    // Published on loopback only: not from outside.
    assert_eq!(
        fetch(&n, "http://127.0.0.1:8081/").as_deref(),
        Some("hello from httpd\n")
    );
    assert_eq!(fetch(&out.0, "http://198.51.100.1:8081/"), None);
    // -P: the exposed port 81 went to a free host port; `port` and `ps` say which.
    let p81 = d.ok(&["port", "web", "81"]);
    let host_port: u16 = p81.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(host_port > 1024, "{p81}");
    let ports = d.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ports.contains("0.0.0.0:8080->80/tcp"), "{ports}");
    assert!(ports.contains(&format!("0.0.0.0:{host_port}->81/tcp")), "{ports}");
    assert!(ports.contains("127.0.0.1:8081->80/tcp"), "{ports}");
    let all = d.ok(&["port", "web"]);
    assert!(all.contains("80/tcp -> 0.0.0.0:8080"), "{all}");

    // Outbound traffic is masqueraded: the outside sees the host's address.
    let mut listener = in_netns(&out.0, "python3")
        .args([
            "-c",
            "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('198.51.100.2',9999));s.listen();c,a=s.accept();c.send(a[0].encode()+b'\\n');c.close()",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let seen = d.ok(&["exec", "web", "busybox", "nc", "198.51.100.2", "9999"]);
    assert_eq!(seen.trim(), "198.51.100.1", "not masqueraded");
    let _ = listener.wait();

    // A port already published: docker's error, and the failed container leaves nothing.
    let o = d.run(&[
        "run", "-d", "--name", "web2", "-p", "8080:80", "busybox", "busybox", "sleep", "100",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("port is already allocated"), "{}", stderr(&o));
    let o = d.run(&["run", "-p", "8080:80/icmp", "busybox", "true"]);
    assert!(stderr(&o).contains("invalid proto"), "{}", stderr(&o));
    let o = d.run(&["run", "--network", "host", "-p", "80", "busybox", "true"]);
    assert!(stderr(&o).contains("port publishing"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "web", "web2"]);
    assert_eq!(fetch(&n, "http://127.0.0.1:8080/"), None);
    let after = net_state(&d);
    // The default bridge stays (docker0's way); everything of the containers is gone.
    assert_eq!(after.cache, before.cache, "CNI cache");
    assert_eq!(after.ipam, Vec::<String>::new(), "addresses");
    assert_eq!(after.netns, Vec::<String>::new(), "namespaces");
    assert!(
        !after.rules.iter().any(|r| r.contains("8080") || r.contains("8081")),
        "{:?}",
        after.rules
    );
    assert_eq!(
        after.links.iter().filter(|l| l.starts_with("veth")).count(),
        0,
        "{:?}",
        after.links
    );
}

#[test]
fn user_networks_resolve_names_and_stay_apart() {
    let d = daemon();
    let _out = Outside::link(&d);
    let id = d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--label",
        "team=a",
        "n1",
    ]);
    assert_eq!(id.trim().len(), 64);
    d.ok(&["network", "create", "n2"]);
    d.ok(&["network", "create", "--internal", "closed"]);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(
        ls,
        "bridge bridge\nclosed bridge\nhost host\nn1 bridge\nn2 bridge\nnone null\n"
    );
    assert_eq!(
        d.ok(&["network", "ls", "-q", "--filter", "label=team=a"]).trim(),
        &id.trim()[..12]
    );

    // Bad input: one error each, nothing half-made.
    for (args, msg) in [
        (vec!["network", "create", "--subnet", "10.77.0.128/25", "x"], "overlaps"),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.78.0.0/24",
                "--gateway",
                "10.79.0.1",
                "x",
            ],
            "not a usable address",
        ),
        (vec!["network", "create", "n1"], "already exists"),
        (vec!["network", "create", "--subnet", "fd00::/64", "x"], "IPv6"),
        (vec!["network", "rm", "bridge"], "pre-defined"),
    ] {
        let o = d.run(&args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(d.ok(&["network", "ls", "-q"]).lines().count(), 6);
    let o = d.run(&["run", "--network", "n1", "--ip", "10.66.0.5", "busybox", "true"]);
    assert!(stderr(&o).contains("10.66.0.5"), "{}", stderr(&o));
    let o = d.run(&["run", "--ip", "172.29.0.50", "busybox", "true"]);
    assert!(stderr(&o).contains("user defined networks only"), "{}", stderr(&o));
    let o = d.run(&["run", "--network", "nope", "busybox", "true"]);
    assert!(stderr(&o).contains("network nope not found"), "{}", stderr(&o));

    // Names, aliases and short IDs on a user-defined network; a fixed address.
    let a1 = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "a1",
            "--network",
            "n1",
            "--network-alias",
            "alpha",
            "--ip",
            "10.77.0.50",
            "busybox",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.n1.IPAddress}}", "a1"])
            .trim(),
        "10.77.0.50"
    );
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "busybox",
        "sh",
        "-c",
        &format!(
            "for n in a1 alpha {}; do busybox ping -c1 -W2 $n | busybox head -1; done; cat /etc/resolv.conf",
            &a1[..12]
        ),
    ]);
    assert_eq!(o.matches("(10.77.0.50)").count(), 3, "{o}");
    assert!(o.contains("nameserver 10.77.0.1"), "{o}");
    // Not from another network, nor from the default bridge, neither by name nor address.
    let o = d.run(&[
        "run",
        "--rm",
        "--network",
        "n2",
        "busybox",
        "busybox",
        "ping",
        "-c1",
        "-W1",
        "a1",
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    for net in ["n2", "bridge"] {
        let o = d.run(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "busybox",
            "ping",
            "-c1",
            "-W1",
            "10.77.0.50",
        ]);
        assert_ne!(o.status.code(), Some(0), "{net} reached n1: {}", stdout(&o));
    }
    // The default bridge reaches the outside; an internal network has no way out but
    // reaches its own.
    d.ok(&[
        "run",
        "--rm",
        "busybox",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "198.51.100.2",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "in1",
        "--network",
        "closed",
        "busybox",
        "busybox",
        "sleep",
        "1000",
    ]);
    let o = d.run(&[
        "run",
        "--rm",
        "--network",
        "closed",
        "busybox",
        "busybox",
        "ping",
        "-c1",
        "-W1",
        "198.51.100.2",
    ]);
    assert_ne!(o.status.code(), Some(0), "internal reached out: {}", stdout(&o));
    d.ok(&[
        "run",
        "--rm",
        "--network",
        "closed",
        "busybox",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "in1",
    ]);

    // connect and disconnect a running container.
    d.ok(&["network", "connect", "--alias", "beta", "n2", "a1"]);
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "n2",
        "busybox",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "beta",
    ]);
    assert!(o.contains("1 packets received"), "{o}");
    // a1 now resolves names of both its networks (its resolver is n1's); a rename answers
    // at once; a container on n2 alone cannot use n1's resolver.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "b2",
        "--network",
        "n2",
        "busybox",
        "busybox",
        "sleep",
        "1000",
    ]);
    let o = d.ok(&["exec", "a1", "busybox", "ping", "-c1", "-W2", "b2"]);
    assert!(o.contains("1 packets received"), "{o}");
    d.ok(&["rename", "a1", "a1x"]);
    let o = d.ok(&["exec", "b2", "busybox", "ping", "-c1", "-W2", "a1x"]);
    assert!(o.contains("1 packets received"), "{o}");
    let o = d.run(&["exec", "b2", "busybox", "nslookup", "alpha", "10.77.0.1"]);
    assert!(
        !stdout(&o).contains("10.77.0.50"),
        "n1's resolver answered n2: {}",
        stdout(&o)
    );
    d.ok(&["rm", "-f", "b2"]);
    d.ok(&["rename", "a1x", "a1"]);
    let o = d.run(&["network", "rm", "n2"]);
    assert!(stderr(&o).contains("has active endpoints"), "{}", stderr(&o));
    let insp = d.ok(&["network", "inspect", "-f", "{{json .Containers}}", "n2"]);
    assert!(insp.contains(&a1), "{insp}");
    d.ok(&["network", "disconnect", "n2", "a1"]);
    let o = d.run(&[
        "run",
        "--rm",
        "--network",
        "n2",
        "busybox",
        "busybox",
        "ping",
        "-c1",
        "-W1",
        "beta",
    ]);
    assert_ne!(o.status.code(), Some(0));
    let links = d.ok(&["exec", "a1", "busybox", "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");

    // Events, prune, and removal leave nothing.
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let ev = d.ok(&["events", "--since", "1h", "--until", &until, "--filter", "type=network"]);
    for action in ["create", "connect", "disconnect"] {
        assert!(ev.contains(&format!("network {action}")), "{action}: {ev}");
    }
    d.ok(&["rm", "-f", "a1", "in1"]);
    let pruned = d.ok(&["network", "prune", "-f"]);
    assert!(
        pruned.contains("n1") && pruned.contains("n2") && pruned.contains("closed"),
        "{pruned}"
    );
    let NetState {
        links,
        cache,
        ipam,
        netns,
        ..
    } = net_state(&d);
    assert!(
        !links.iter().any(|l| l.starts_with("dray-") || l.starts_with("veth")),
        "{links:?}"
    );
    assert!(
        cache.is_empty() && ipam.is_empty() && netns.is_empty(),
        "{cache:?} {ipam:?} {netns:?}"
    );
    let nft = in_netns(&ns(&d), "nft")
        .args(["list", "table", "inet", "dray"])
        .output()
        .unwrap();
    assert!(!stdout(&nft).contains("drop"), "{}", stdout(&nft));
}

#[test]
fn host_none_and_container_network_modes() {
    let d = daemon();
    let _out = Outside::link(&d);
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(o.contains("vin@"), "{o}");
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "busybox",
        "ip",
        "-o",
        "addr",
    ]);
    assert!(o.contains("127.0.0.1") && !o.contains("eth0"), "{o}");
    d.ok(&["run", "-d", "--name", "base", "busybox", "busybox", "sleep", "1000"]);
    let ip_base = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "base"]);
    assert!(ip_base.starts_with("172.29."), "{ip_base}");
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:base",
        "busybox",
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
    ]);
    assert!(o.contains(ip_base.trim()), "{o}");
    let o = d.run(&["run", "--rm", "--network", "container:nope", "busybox", "true"]);
    assert_ne!(o.status.code(), Some(0));
    // --add-host, --dns and --dns-search reach the files.
    let o = d.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "example.org",
        "--hostname",
        "h1",
        "busybox",
        "cat",
        "/etc/hosts",
        "/etc/resolv.conf",
    ]);
    assert!(o.contains("10.1.2.3\tdb\n") && o.contains("172.29.0.1\tgw\n"), "{o}");
    assert!(
        o.contains("\th1\n") && o.contains("nameserver 192.0.2.53\n") && o.contains("search example.org\n"),
        "{o}"
    );
    d.ok(&["rm", "-f", "base"]);
    let NetState { cache, ipam, netns, .. } = net_state(&d);
    assert!(
        cache.is_empty() && ipam.is_empty() && netns.is_empty(),
        "{cache:?} {ipam:?} {netns:?}"
    );
}

#[test]
fn networks_survive_a_killed_drayd_and_runs_leave_nothing() {
    let mut d = daemon();
    let n = ns(&d);
    d.ok(&["network", "create", "n1"]);
    let www = d.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "still here\n").unwrap();
    let vol = format!("{}:/www:ro", www.display());
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "-v",
        &vol,
        "busybox",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let doomed = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "doomed",
            "--network",
            "n1",
            "-p",
            "8090:80",
            "busybox",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let pid: i32 = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", "doomed"])
        .trim()
        .parse()
        .unwrap();
    d.kill9();
    // While drayd is down, one container dies with its shim.
    let _ = Command::new("pkill")
        .args(["-9", "-f", &format!("containerd-shim-dray-v2.*{doomed}")])
        .status();
    // SAFETY: kill(2) of a container process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    d.spawn();
    assert!(wait_until(Duration::from_secs(10), || d
        .ok(&["inspect", "-f", "{{.State.Status}}", "doomed"])
        .trim()
        == "exited"));
    // Its network is gone; the other still serves, by its name too, and holds its port.
    assert!(wait_until(Duration::from_secs(5), || !net_state(&d)
        .netns
        .contains(&doomed)));
    assert!(!net_state(&d).cache.iter().any(|c| c.contains(&doomed)));
    assert_eq!(fetch(&n, "http://127.0.0.1:8080/").as_deref(), Some("still here\n"));
    assert_eq!(fetch(&n, "http://127.0.0.1:8090/"), None);
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "busybox",
        "busybox",
        "wget",
        "-qO-",
        "http://web/",
    ]);
    assert_eq!(o, "still here\n");
    let o = d.run(&["run", "--rm", "-p", "8080:80", "busybox", "true"]);
    assert!(stderr(&o).contains("port is already allocated"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "doomed"]);
    assert!(
        !net_state(&d).rules.iter().any(|r| r.contains("8090")),
        "{:?}",
        net_state(&d).rules
    );

    // 200 run/rm cycles on the default bridge and a user network, with published ports:
    // nothing stays behind.
    // The default bridge is made by its first container (as the plugin makes bridges).
    d.ok(&["run", "--rm", "busybox", "true"]);
    let base = net_state(&d);
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", d.child.as_ref().unwrap().id()))
            .unwrap()
            .count()
    };
    let fds_before = fds();
    for i in 0..100 {
        let net = if i % 2 == 0 { "bridge" } else { "n1" };
        d.ok(&["run", "--rm", "--network", net, "-p", "80", "busybox", "true"]);
        let id = d.ok(&["run", "-d", "--network", net, "busybox", "busybox", "sleep", "100"]);
        d.ok(&["rm", "-f", id.trim()]);
    }
    let after = net_state(&d);
    assert_eq!(after, base, "network state changed over 200 runs");
    assert!(fds() <= fds_before + 2, "drayd's fds grew: {fds_before} -> {}", fds());
    d.ok(&["rm", "-f", "web"]);
}
