//! The `dray` binary: a thin wrapper over the library's CLI.

fn main() {
    std::process::exit(dray_runtime::cli::main());
}
