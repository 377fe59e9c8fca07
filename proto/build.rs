//! Generates the gRPC code from `dreamfarm.proto` with a vendored `protoc`,
//! so a fresh machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        // Pixel pieces are received as slices of the transport's buffer
        // instead of fresh copies: they are most of the bytes a farm moves.
        .bytes(".dreamfarm.v1.Chunk.data")
        .bytes(".dreamfarm.v1.ChangePiece.data")
        .compile_protos(&["dreamfarm.proto"], &["."])?;
    println!("cargo:rerun-if-changed=dreamfarm.proto");
    Ok(())
}
