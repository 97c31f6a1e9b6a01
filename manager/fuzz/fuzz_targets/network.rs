//! Fuzzes the network code's parsers of outside input: DNS queries from containers (every
//! query that parses gets an answer that parses back to the same question), CNI plugin
//! answers and configuration lists, and `-p` specs. None may panic.
#![no_main]

use std::net::Ipv4Addr;

use dray_manager::network::{cni, dns, ports};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(q) = dns::parse_query(data) {
        assert!(q.question_end <= data.len());
        let a = dns::answer(data, &q, &[Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(&a[..2], &data[..2]);
        assert_eq!(&a[12..q.question_end], &data[12..q.question_end]);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = cni::addresses(&v, "eth0");
    }
    let _ = cni::ConfList::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(bindings) = ports::parse(s) {
            for b in bindings {
                assert!(b.container_port != 0);
            }
        }
    }
});
