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
//! - [`domain`]: validated values (names, callback URLs, tokens, page tokens).
//! - [`store`]: every SQL statement.
//! - [`publish`]: events into the transactional outbox (the Publish RPC and Rust producers).
//! - [`dispatch`]: the batcher: claim with a lease, attempt (signed), record, retry.
//! - [`signing`], [`listener`]: Standard Webhooks signatures, and the listener side.
//! - [`secret_box`]: encryption at rest of signing secrets.
//! - [`synthetic`]: realistic repository-push events for trying things out.
//! - [`error`]: the one error type and its mapping to Connect codes.
//! - [`database`] and [`local_pg`]: where the database comes from (`DATABASE_URL` or the
//!   embedded PostgreSQL).
//! - [`proto`]: code generated from `proto/`.

pub mod api;
pub mod app;
pub mod config;
pub mod database;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod listener;
pub mod local_pg;
pub mod proto;
pub mod publish;
pub mod secret_box;
pub mod signing;
pub mod store;
pub mod synthetic;

pub use error::{Error, Result};
