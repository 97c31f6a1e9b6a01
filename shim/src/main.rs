//! `containerd-shim-dray-v2`: `start`, `delete`, `-v`, or (no action) the shim server.

// Casts that truncate or lose the sign, and public types without Debug, are errors here (as
// firecracker has them): a pid, an fd or a size that silently wraps is a bug.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_debug_implementations
)]

use dray_shim::{args::Flags, bootstrap, server};
use std::io::Write;

fn main() {
    let flags = match Flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if flags.version {
        let name = std::env::args()
            .next()
            .unwrap_or_else(|| "containerd-shim-dray-v2".into());
        println!("{name}:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Revision: {}", option_env!("DRAY_REVISION").unwrap_or("unknown"));
        return;
    }
    let r = match flags.action.as_deref() {
        Some("start") => bootstrap::start(&flags).map(|a| a.into_bytes()),
        Some("delete") => bootstrap::delete(&flags),
        Some(other) => Err(anyhow::anyhow!("unknown action {other:?} (start, delete)")),
        None => server::serve(&flags).map(|_| Vec::new()),
    };
    match r {
        Ok(out) => {
            let mut o = std::io::stdout();
            let _ = o.write_all(&out);
            let _ = o.flush();
        }
        Err(e) => {
            eprintln!("containerd-shim-dray-v2: {e:#}");
            std::process::exit(1);
        }
    }
}
