//! `webhookd-bench`: the benchmarks of BENCHMARKS.md, as a bench target so that it is built
//! with the `webhookd` binary it measures (`CARGO_BIN_EXE_webhookd`, in the bench profile)
//! and is never part of what `cargo install` installs.
//!
//! ```console
//! $ cargo bench --bench webhookd-bench -- all --runs 3   # every scenario, three times
//! $ cargo bench --bench webhookd-bench -- throughput     # one scenario
//! ```
//! The tests run every scenario in quick mode (`tests/it/bench.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
// Shared with the integration tests, which use the parts the harness does not.
#[allow(dead_code)]
#[path = "../../tests/it/receiver.rs"]
mod receiver;
#[path = "../../tests/it/wait.rs"]
mod wait;

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let args = harness::Args::parse();
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_webhookd"));
    let summaries = harness::run(args, binary).await?;
    println!("{}", harness::report::markdown(&summaries));
    Ok(())
}
