//! The benchmark harness: brings up PostgreSQL (embedded, durable defaults, or
//! `DATABASE_URL`), `webhookd serve` processes and in-process receivers, drives scenarios,
//! and summarises their figures. Shared by the `webhookd-bench` bench target (`main.rs`)
//! and the integration tests, which run every scenario in quick mode.

pub mod angos;
pub mod api;
pub mod console;
pub mod env;
pub mod flood;
pub mod formats;
pub mod one_per_call;
pub mod report;
pub mod retention;
pub mod scenarios;
pub mod steady;

use std::path::PathBuf;

use clap::Parser;

/// Benchmarks for webhookd (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "webhookd-bench")]
pub struct Args {
    /// A scenario, or `all` of them in order.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(
        std::iter::once("all").chain(scenarios::ALL.iter().copied())
    ))]
    pub scenario: String,
    /// Small counts and short runs that check correctness, not speed (what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// How many times to run each scenario (the report gives median and spread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Where results go (results.json, results.md) and where the embedded PostgreSQL lives.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// The `webhookd` binary to start as `serve` (default: the one cargo built beside this
    /// harness), for comparing builds.
    #[arg(long, env = "WEBHOOKD_BENCH_SERVE")]
    pub serve: Option<PathBuf>,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// Runs `args`' scenarios with `binary` as `serve` (unless `--serve` names another); writes
/// `results.json` and `results.md` into `--out` and returns the summaries.
///
/// # Errors
/// A scenario that fails (its error says which), or one that could not start.
pub async fn run(args: Args, binary: PathBuf) -> anyhow::Result<Vec<report::Summary>> {
    // The clients' TLS stack (reqwest is built without a default provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&args.out)?;
    let out = std::path::absolute(&args.out)?;
    let pg_dir = out.join("pg");
    let binary = args.serve.clone().unwrap_or(binary);
    anyhow::ensure!(binary.exists(), "{} not found", binary.display());
    let server = tokio::task::spawn_blocking(move || env::Server::start(&pg_dir, binary)).await??;
    let plan = scenarios::Plan { quick: args.quick };
    let names: Vec<&str> = if args.scenario == "all" {
        scenarios::ALL.to_vec()
    } else {
        vec![args.scenario.as_str()]
    };
    let measured = measure(&server, &plan, &names, args.runs).await;
    tokio::task::spawn_blocking(move || server.stop()).await??;
    let summaries = report::summarise(&measured?);
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&summaries)?,
    )?;
    std::fs::write(out.join("results.md"), report::markdown(&summaries))?;
    Ok(summaries)
}

/// Every figure of `runs` runs of each scenario of `names`, in order.
async fn measure(
    server: &env::Server,
    plan: &scenarios::Plan,
    names: &[&str],
    runs: u32,
) -> anyhow::Result<Vec<report::Row>> {
    let mut rows = vec![];
    for name in names {
        for run in 1..=runs {
            eprintln!("== {name} (run {run}/{runs})");
            let measured = scenarios::run(name, server, plan)
                .await
                .map_err(|e| e.context(format!("scenario {name}")))?;
            for row in &measured {
                eprintln!(
                    "   {} | {} | {}: {:.2}",
                    row.scenario, row.case, row.metric, row.value
                );
            }
            rows.extend(measured);
        }
    }
    Ok(rows)
}
