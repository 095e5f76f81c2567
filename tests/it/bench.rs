//! The benchmark harness (`benches/webhookd-bench`, compiled into this binary too) in quick
//! mode, so that it cannot rot: every scenario runs with small counts and checks its own
//! correctness (every event arrived exactly as published, where it delivers), never speed.

use clap::Parser as _;

use crate::harness::{Args, run, scenarios};
use crate::helpers::tempdir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_harness_runs_every_scenario_in_quick_mode() {
    let out = tempdir("bench-quick");
    let args = Args::try_parse_from([
        "webhookd-bench",
        "all",
        "--quick",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_webhookd").into();
    let summaries = run(args, binary).await.unwrap();

    // Every scenario reported, in order, each figure from the one run.
    let reported: Vec<&str> = summaries.iter().map(|s| s.scenario.as_str()).collect();
    let mut order = reported.clone();
    order.dedup();
    assert_eq!(order.len(), scenarios::ALL.len(), "{order:?}");
    for (shown, name) in order.iter().zip(scenarios::ALL) {
        assert!(
            shown.replace('-', " ").ends_with(&name.replace('-', " ")),
            "{shown} reported where {name} was due"
        );
    }
    for s in &summaries {
        let what = format!("{} | {} | {}", s.scenario, s.case, s.metric);
        assert_eq!(s.runs.len(), 1, "{what}");
        assert!(
            s.median.is_finite() && s.median >= 0.0,
            "{what}: {}",
            s.median
        );
        // A rate, a size or a ratio of nothing means nothing flowed. A latency may be 0
        // (a delivery handed over before the publish was acknowledged), and so may a CPU
        // time counted in 10 ms ticks over a quick run's few deliveries.
        // So may the attempts a live-tail reader missed (none, when it keeps up).
        let may_be_zero =
            s.metric.contains(" ms") || s.metric.contains("CPU s") || s.metric == "attempts missed";
        if !may_be_zero {
            assert!(s.median > 0.0, "{what} is 0");
        }
    }
    let written = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert_eq!(written.lines().count(), summaries.len() + 2, "{written}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_benchmark_harness_names_its_scenarios_when_given_another() {
    // Refused by the argument parser, before the harness creates or starts anything.
    let err = Args::try_parse_from(["webhookd-bench", "througput"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let message = err.to_string();
    assert!(
        message.contains("invalid value 'througput'")
            && message.contains("[possible values: all, throughput, latency, cadence, ingest, api, slow-subscriber, scale-out, resources, one-per-call, body-flood, formats, retention, angos-required, console, tail]"),
        "{message}"
    );
}
