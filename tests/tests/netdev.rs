//! linux.netDevices: a host interface moved (and renamed) into the container.

use dray_e2e::*;
use serde_json::json;
use std::process::Command;

#[test]
fn a_host_interface_is_moved_and_renamed() {
    // One end of a veth pair (the other end stays on the host).
    let host = format!("drd{}", std::process::id() % 100000);
    let peer = format!("drp{}", std::process::id() % 100000);
    let st = Command::new("ip")
        .args(["link", "add", &host, "type", "veth", "peer", "name", &peer])
        .status()
        .unwrap();
    assert!(st.success(), "cannot create a veth pair");
    let _ = Command::new("ip").args(["link", "set", &host, "mtu", "1400"]).status();
    let mut b = Bundle::new("netdev", &["sh", "-c", "ip link show eth7"]);
    b.config["linux"]["netDevices"] = json!({ host.clone(): {"name": "eth7"} });
    let o = b.run();
    let _ = Command::new("ip").args(["link", "del", &peer]).status();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("eth7") && out.contains("mtu 1400"), "{out}");
    // The moved end died with the container's namespace (which took its peer with it).
    assert!(!Command::new("ip")
        .args(["link", "show", &host])
        .output()
        .unwrap()
        .status
        .success());
    // A missing device, or no network namespace of its own: clear errors, nothing left.
    let mut b = Bundle::new("netdevmissing", &["true"]);
    b.config["linux"]["netDevices"] = json!({"nosuchdev0": {}});
    let o = b.run();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nosuchdev0"), "{}", stderr(&o));
    assert_no_leaks(&b);
    let mut b = Bundle::new("netdevnons", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.config["linux"]["netDevices"] = json!({"lo": {}});
    let o = b.run();
    assert!(stderr(&o).contains("new network namespace"), "{}", stderr(&o));
    assert_no_leaks(&b);
}
