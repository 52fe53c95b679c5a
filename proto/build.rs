//! Compiles `raftkv/v1/*.proto` with protox (pure Rust), so building needs no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "raftkv/v1/kv.proto",
        "raftkv/v1/cluster.proto",
        "raftkv/v1/raft.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .bytes(".raftkv.v1.RaftRequest.payload")
        .bytes(".raftkv.v1.RaftReply.payload")
        .bytes(".raftkv.v1.BackupChunk.data")
        .compile_fds(fds)?;
    Ok(())
}
