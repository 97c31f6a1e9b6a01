//! Generates the gRPC code of drayd's API from `proto/dray/v1/*.proto` with Debian's `protoc`
//! (package protobuf-compiler; `PROTOC` names another one).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/dray/v1/images.proto",
        "proto/dray/v1/system.proto",
        "proto/dray/v1/containers.proto",
        "proto/dray/v1/volumes.proto",
        "proto/dray/v1/networks.proto",
        "proto/dray/v1/events.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&files, &["proto"])?;
    Ok(())
}
