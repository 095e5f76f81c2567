//! The code generated from `proto/` by `build.rs`: buffa messages and connectrpc service
//! stubs. Nothing hand-written lives here; the rest of the crate converts these types into
//! domain types at the edge (`api/`).

#![allow(missing_docs, clippy::all, rust_2018_idioms)]

connectrpc::include_generated!();

/// The encoded `FileDescriptorSet` of the services `webhookd serve` answers (and their
/// imports), for gRPC server reflection.
pub const SERVED_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/webhookd_served.bin"));
