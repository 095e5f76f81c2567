//! `webhookd-bench`: brings up PostgreSQL (embedded, durable defaults, or `DATABASE_URL`),
//! `webhookd serve` processes and in-process receivers, drives a scenario, and writes a JSON
//! result and a Markdown table.
//!
//! ```console
//! $ cargo run --release --bin webhookd-bench -- all --runs 3   # builds `webhookd` too
//! $ cargo run --bin webhookd-bench -- all --quick   # seconds, small counts, checks correctness
//! ```

mod api;
mod env;
mod one_per_call;
mod report;
mod scenarios;

use std::path::PathBuf;

use clap::Parser;

/// Benchmarks for webhookd (see BENCHMARKS.md).
#[derive(Debug, Parser)]
struct Args {
    /// A scenario, or `all` of them in order.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(
        std::iter::once("all").chain(scenarios::ALL.iter().copied())
    ))]
    scenario: String,
    /// Small counts and short runs that check correctness, not speed (what CI runs).
    #[arg(long)]
    quick: bool,
    /// How many times to run each scenario (the report gives median and spread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Where results go (results.json, results.md) and where the embedded PostgreSQL lives.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let out = std::path::absolute(&args.out)?;
    let pg_dir = out.join("pg");
    let binary = tokio::task::spawn_blocking(env::serve_binary).await??;
    let server = tokio::task::spawn_blocking(move || env::Server::start(&pg_dir, binary)).await??;
    let plan = scenarios::Plan { quick: args.quick };
    let names: Vec<&str> = if args.scenario == "all" {
        scenarios::ALL.to_vec()
    } else {
        vec![args.scenario.as_str()]
    };
    let mut rows = vec![];
    for name in names {
        for run in 1..=args.runs {
            eprintln!("== {name} (run {run}/{})", args.runs);
            let measured = match scenarios::run(name, &server, &plan).await {
                Ok(measured) => measured,
                Err(e) => {
                    tokio::task::spawn_blocking(move || server.stop()).await??;
                    return Err(e.context(format!("scenario {name}")));
                }
            };
            for row in &measured {
                eprintln!(
                    "   {} | {} | {}: {:.2}",
                    row.scenario, row.case, row.metric, row.value
                );
            }
            rows.extend(measured);
        }
    }
    tokio::task::spawn_blocking(move || server.stop()).await??;
    let summaries = report::summarise(&rows);
    let table = report::markdown(&summaries);
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&summaries)?,
    )?;
    std::fs::write(out.join("results.md"), &table)?;
    println!("{table}");
    Ok(())
}
