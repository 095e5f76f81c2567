//! The one error type of the crate and its one mapping to Connect codes.
//!
//! Variants are what a caller can act on. Infrastructure faults keep their typed cause
//! (`#[source]`) so that the cause chain is logged once, here, where the error becomes a
//! response; callers only ever see an opaque message for them.

use connectrpc::{ConnectError, ErrorCode};

/// `Result` with the crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while serving a request or running a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or breaks a documented rule; the message says which.
    #[error("{0}")]
    InvalidArgument(String),
    /// No credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials that do not cover the resource.
    #[error("{0}")]
    PermissionDenied(String),
    /// The resource does not exist, or the caller may not know that it exists.
    #[error("{0}")]
    NotFound(String),
    /// The resource already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// A quota is used up.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request is valid but the resource is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database cannot be reached; the request may be retried.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything unexpected. Logged with its cause chain; the caller sees an opaque message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// The Connect code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            Error::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<sqlx::Error> for Error {
    /// Connection-level failures are `Unavailable` (retryable); everything else the store
    /// did not translate itself is a bug or an unexpected state, so `Internal`.
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Error::Unavailable(error),
            sqlx::Error::Database(ref db) if is_transient(db.code().as_deref()) => {
                Error::Unavailable(error)
            }
            other => Error::Internal(anyhow::Error::new(other).context("database query failed")),
        }
    }
}

/// SQLSTATE classes that mean "try again later": connection exceptions (08), insufficient
/// resources (53), operator intervention such as a shutdown (57), lock timeouts (55P03).
fn is_transient(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || c == "55P03"
    })
}

impl From<Error> for ConnectError {
    fn from(error: Error) -> Self {
        let code = error.code();
        match &error {
            Error::Unavailable(_) => {
                tracing::warn!(error.cause_chain = ?anyhow::Error::from(error), "database unavailable");
                ConnectError::new(code, "the database is unavailable; retry later")
            }
            Error::Internal(cause) => {
                tracing::error!(error.cause_chain = ?cause, "internal error");
                ConnectError::new(code, "internal error; the server log has the details")
            }
            _ => ConnectError::new(code, error.to_string()),
        }
    }
}
