//! Fuzzes the parsers of registry input: manifests and indexes, image configs, references and
//! WWW-Authenticate challenges. None may panic; what parses must be internally consistent.
#![no_main]

use dray_manager::images::types::{parse_config, parse_manifest, select_platform, Parsed, Platform};
use dray_manager::remote::auth::parse_challenge;
use dray_manager::remote::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ct in [
        "",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ] {
        if let Ok(Parsed::Index(idx)) = parse_manifest(data, ct) {
            let _ = select_platform(&idx, &Platform::host());
        }
    }
    if let Ok(c) = parse_config(data) {
        let _ = dray_manager::digest::chain_ids(&c.rootfs.diff_ids);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = Reference::parse(s) {
            // A normalised reference parses to itself.
            let again = Reference::parse(&r.to_string()).expect("a normalised reference must parse");
            assert_eq!(again, r);
        }
        let _ = parse_challenge(s);
        let _ = Platform::parse(s);
    }
});
