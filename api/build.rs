//! Compiles `proto/quern/v1/*.proto` with a protoc that Cargo provides, so a clean
//! machine needs nothing but Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().btree_map(".").compile_protos(&["proto/quern/v1/quern.proto"], &["proto"])?;
    Ok(())
}
