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
//! - [`error`]: the one error type and its mapping to Connect codes.
//! - [`database`] and [`local_pg`]: where the database comes from (`DATABASE_URL` or the
//!   embedded PostgreSQL).
//! - [`proto`]: code generated from `proto/`.

pub mod api;
pub mod app;
pub mod config;
pub mod database;
pub mod domain;
pub mod error;
pub mod local_pg;
pub mod proto;
pub mod store;

pub use error::{Error, Result};
