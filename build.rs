//! Generates the protobuf messages (buffa) and Connect service stubs (connectrpc) from
//! `proto/`, with protox as the compiler so that no system `protoc` is needed. The same
//! descriptor set is embedded for gRPC server reflection.

use std::path::PathBuf;

/// Every proto file the crate serves or sends, as named inside the descriptor set.
const FILES: &[&str] = &[
    "buf/alpha/registry/v1alpha1/webhook.proto",
    "buf/alpha/registry/v1alpha1/repository.proto",
    "buf/alpha/registry/v1alpha1/repository_commit.proto",
    "buf/alpha/registry/v1alpha1/repository_tag.proto",
    "buf/alpha/webhook/v1alpha1/event.proto",
    "webhookd/v1/event.proto",
    "webhookd/v1/publish.proto",
    "webhookd/v1/subscription.proto",
    "webhookd/v1/delivery.proto",
];

/// The files whose services `webhookd serve` answers, for gRPC server reflection.
const SERVED: &[&str] = &[
    "buf/alpha/registry/v1alpha1/webhook.proto",
    "webhookd/v1/publish.proto",
    "webhookd/v1/subscription.proto",
    "webhookd/v1/delivery.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate!() embeds migrations/: a new migration must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(FILES)?;
    let descriptor_path = out_dir.join("webhookd_descriptor.bin");
    std::fs::write(&descriptor_path, compiler.encode_file_descriptor_set())?;
    // Reflection describes only what this server answers: WebhookService and its imports,
    // not the EventService that listeners implement.
    let mut served = protox::Compiler::new(["proto"])?;
    served.include_imports(true);
    served.open_files(SERVED)?;
    std::fs::write(
        out_dir.join("webhookd_served.bin"),
        served.encode_file_descriptor_set(),
    )?;
    connectrpc_build::Config::new()
        .descriptor_set(&descriptor_path)
        // Its directive would name the descriptor this script has just written, newer than
        // cargo's reference time, so every build would run the script and rebuild the crate;
        // the proto directive above covers what the descriptor is made from.
        .emit_rerun_directives(false)
        .files(FILES)
        .include_file("_connectrpc.rs")
        .compile()?;
    Ok(())
}
