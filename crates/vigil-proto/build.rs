//! Generates the `vigil.v1` messages and service with a vendored `protoc`,
//! so building needs no system protobuf compiler.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build runs the compiler named by PROTOC.
    std::env::set_var("PROTOC", protoc);
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let proto = root.join("vigil/v1/vigil.proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("vigil_v1_descriptor.bin"))
        .compile_protos(std::slice::from_ref(&proto), &[root])?;
    println!("cargo:rerun-if-changed={}", proto.display());
    Ok(())
}
