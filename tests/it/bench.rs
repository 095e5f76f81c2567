//! The benchmark harness in quick mode, so that it cannot rot: every scenario runs with
//! small counts and checks its own correctness (every event arrived exactly as published,
//! where it delivers), never speed.

use std::process::Command;

use crate::helpers::{run, tempdir};

#[tokio::test]
async fn the_benchmark_harness_runs_every_scenario_in_quick_mode() {
    let out = tempdir("bench-quick");
    let mut bench = Command::new(env!("CARGO_BIN_EXE_webhookd-bench"));
    bench
        .args(["all", "--quick", "--out"])
        .arg(&out)
        // Under `cargo run` the harness builds `webhookd` first; `cargo test` has built it.
        .env_remove("CARGO")
        .env("RUST_BACKTRACE", "0");
    let (code, table, err) = run(bench).await;
    assert_eq!(code, 0, "{err}");
    for scenario in [
        "1 throughput",
        "2 latency",
        "3 cadence",
        "4 ingest",
        "5 api",
        "6 slow subscriber",
        "7 scale-out",
        "8 resources",
        "9 one per call",
    ] {
        assert!(
            table.contains(scenario),
            "{scenario} missing from:\n{table}"
        );
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["median"].as_f64().unwrap() >= 0.0)
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[tokio::test]
async fn the_benchmark_harness_names_its_scenarios_when_given_another() {
    let mut bench = Command::new(env!("CARGO_BIN_EXE_webhookd-bench"));
    // Refused by the argument parser, before the harness creates or starts anything.
    bench.arg("througput");
    let (code, _, err) = run(bench).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("invalid value 'througput'")
            && err.contains("[possible values: all, throughput, latency, cadence, ingest, api, slow-subscriber, scale-out, resources, one-per-call]"),
        "{err}"
    );
}
