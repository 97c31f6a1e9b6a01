//! Fuzzes the layer applier: any byte string, as a tar stream, is applied beneath a fresh
//! directory; whatever it holds, nothing may appear or change outside that directory.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn base() -> &'static PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("dray-fuzz-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&b);
        std::fs::create_dir_all(b.join("outside")).expect("mkdir");
        std::fs::write(b.join("outside/canary"), b"canary").expect("canary");
        b
    })
}

fn listing(p: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let layer = b.join("layer");
    let _ = std::fs::remove_dir_all(&layer);
    std::fs::create_dir(&layer).expect("mkdir layer");
    let _ = dray_manager::unpack::apply_tar_for_fuzzing(&layer, data);
    assert_eq!(
        listing(b),
        vec!["layer".to_string(), "outside".to_string()],
        "something was written beside the layer"
    );
    assert_eq!(listing(&b.join("outside")), vec!["canary".to_string()]);
    assert_eq!(std::fs::read(b.join("outside/canary")).expect("canary"), b"canary");
});
