//! webhookd: a self-hosted webhook subscription and delivery service, wire-compatible with
//! the Buf Schema Registry's `buf.alpha.registry.v1alpha1.WebhookService`.
//!
//! # Layout
//!
//! The modules follow a request from the wire to the database:
//!
//! - [`config`]: the command line (every command and flag).
//! - [`app`]: wiring; `run(args, pool, listener, shutdown)` serves until told to stop.
//! - [`api`]: thin Connect/gRPC/gRPC-Web handlers and the health probes.
//! - [`domain`]: validated values (typed ids, names, callback URLs, tokens, page tokens,
//!   events, deliveries as the log shows them).
//! - [`store`]: every SQL statement; [`store::queue`] is the batcher's side of the queue
//!   (claim, record, release), [`store::notifications`] LISTEN with reconnection.
//! - [`publish`]: events into the transactional outbox (the Publish RPC and Rust producers).
//! - [`dispatch`]: the batcher: claim with a lease, attempt, record, retry. Its pipeline is
//!   [`dispatch::Batcher`] (one `step` is what `serve` does on each wake-up); an attempt's
//!   HTTP request is built in [`dispatch::request`], one file per delivery format.
//!
//! Dependencies point one way, with no cycles: `app` wires `api`, `publish` and `dispatch`;
//! `api` uses `publish`, `store` and `domain`; `publish` hands deliveries to `dispatch` and
//! stores through `store`; `dispatch` uses `store` and `domain`; `store` uses `domain`.
//! - [`signing`], [`listener`]: Standard Webhooks signatures, and the listener side.
//! - [`secret_box`]: encryption at rest of signing secrets.
//! - [`synthetic`]: realistic repository-push events for trying things out.
//! - [`error`]: the one error type and its mapping to Connect codes.
//! - [`database`] and [`local_pg`]: where the database comes from (`DATABASE_URL` or the
//!   embedded PostgreSQL); [`data_dir`]: what webhookd checks before it trusts `--data-dir`.
//! - [`proto`]: code generated from `proto/`.

pub mod api;
pub mod app;
pub mod config;
pub mod config_file;
pub mod data_dir;
pub mod database;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod listener;
pub mod local_pg;
pub mod metrics;
pub mod operator;
pub mod proto;
pub mod publish;
pub mod reload;
pub mod secret_box;
pub mod signing;
pub mod store;
pub mod synthetic;

pub use error::{Error, Result};
