fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto/tokenim/v1/wire.proto");
    println!("cargo:rerun-if-changed=proto/tokenim/v1/chunks.proto");
    prost_build::compile_protos(
        &[
            "proto/tokenim/v1/wire.proto",
            "proto/tokenim/v1/chunks.proto",
        ],
        &["proto"],
    )
}
