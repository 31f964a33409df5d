//! Generates the Rust types for the wire format from `proto/tokenim/v1/*.proto` (the spec):
//! every `.proto` file in that folder is compiled, so a new one needs no line here unless its
//! Debug must be redacted.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("proto/tokenim/v1");
    let mut protos: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed=proto");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    prost_build::Config::new()
        // Hand-written, redacted Debug (src/pb.rs): these carry plaintext or keys.
        .skip_debug([
            "tokenim.v1.InnerMessage",
            "tokenim.v1.SendSessionState",
            "tokenim.v1.RecvSessionState",
            "tokenim.v1.SenderKeyDistribution",
            "tokenim.v1.OwnSenderKeyState",
            "tokenim.v1.SenderKeyState",
            "tokenim.v1.SkippedMessageKey",
            "tokenim.v1.GroupChangeCreate",
            "tokenim.v1.GroupChangeRename",
            "tokenim.v1.LinkOffer",
            "tokenim.v1.FileManifest",
        ])
        .compile_protos(&protos, &[PathBuf::from("proto")])?;
    Ok(())
}
