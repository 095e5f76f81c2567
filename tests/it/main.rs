//! One integration-test binary: the real server on port 0 against a real PostgreSQL (a fresh
//! database per test), driven by real clients (HTTP, the buf CLI, Python grpcio).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod wait;
// The benchmark harness, run here in quick mode (tests/it/bench.rs).
#[path = "../../benches/webhookd-bench/harness/mod.rs"]
mod harness;

mod angos;
mod bad_input;
mod batcher;
mod bench;
mod buf_cli;
mod cli;
mod config_file;
mod console;
mod delivery;
mod delivery_loop;
mod drills;
mod formats;
mod github_hooks;
mod github_hub;
mod github_relay;
mod grpcio;
mod handoff;
mod harbor_policies;
mod harbor_relay;
mod health;
mod listener;
mod local_pg;
mod metrics;
mod operator_cli;
mod plans;
mod protocols;
mod protos;
mod publish_api;
mod receiver;
mod records;
mod retention;
mod ssrf;
mod subscriptions;
mod tail;
mod tls;
mod webhooks_api;
