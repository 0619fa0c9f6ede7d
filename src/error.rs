//! The crate's one error type.

use std::time::Duration;

/// Everything that can go wrong in a store operation.
///
/// Invalid, unknown, expired or tampered input is **not** an error: loading
/// such a cookie yields a fresh session (and a `session_rejected` event).
/// Errors are reserved for failures the application must hear about: the
/// database, the pool, a payload over the configured cap, a value that cannot
/// be encoded or decoded, a bad configuration, and the rare failures of the
/// machinery around them (no unused id, a lost worker task, a failed random
/// generator). Each variant documents when it happens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database rejected a statement or the connection failed mid-way.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),

    /// No pooled connection became free within the pool's acquire timeout.
    #[error("no database connection available within {timeout:?}: {message}")]
    PoolTimeout {
        /// The pool's configured acquire timeout.
        timeout: Duration,
        /// What r2d2 reported (usually the last connection error).
        message: String,
    },

    /// The database did not answer an operation within the client-side
    /// deadline ([`PoolOptions::operation_timeout`](crate::PoolOptions)):
    /// the server, or the network in between, stopped answering. The call
    /// returned without waiting further; its connection is abandoned (the
    /// pool drops it once its socket answers or breaks). A write may still
    /// have been applied by the server; a timed-out operation is never
    /// retried by the store.
    #[error("the session database did not answer within {timeout:?}")]
    Timeout {
        /// The deadline that passed.
        timeout: Duration,
    },

    /// The encrypted session is larger than [`Config::max_payload`](crate::Config).
    /// Nothing was written.
    #[error("session payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Size of the encrypted envelope that would have been written.
        size: usize,
        /// The configured maximum.
        max: usize,
    },

    /// A value could not be serialized to MessagePack (on `Session::insert`).
    #[error("could not encode session value: {0}")]
    Encode(#[from] rmp_serde::encode::Error),

    /// A stored value could not be deserialized into the requested type (on
    /// `Session::get`): the key holds a value of another type.
    #[error("could not decode session value for key {key:?}: {source}")]
    Decode {
        /// The session key that was read.
        key: String,
        /// What MessagePack reported.
        #[source]
        source: rmp_serde::decode::Error,
    },

    /// The store or a key was configured wrongly (bad URL, key length, base64, …).
    #[error("configuration error: {0}")]
    Config(String),

    /// Running the embedded migrations failed.
    #[error("migration error: {0}")]
    Migration(String),

    /// Every freshly drawn session id was already taken: a commit that
    /// inserts or renews a session drew a new random 256-bit id several
    /// times and the database held each one. With a working random
    /// generator this does not happen; it points at a broken generator or a
    /// database that reports every insert as a duplicate. Nothing was
    /// written.
    #[error("could not draw an unused session id")]
    IdsExhausted,

    /// A thread or task that ran the operation for the caller ended without
    /// an answer: a Rocket adapter's blocking task panicked or was
    /// cancelled, or a database worker thread (see
    /// [`PoolOptions::operation_timeout`](crate::PoolOptions)) ended before
    /// it replied. The operation may or may not have been applied.
    #[error("the task running the session operation ended without an answer: {0}")]
    TaskAborted(&'static str),

    /// The operating system's random number generator failed (the admin
    /// page could not draw a CSRF nonce). Nothing was changed.
    #[error("the operating system's random number generator failed")]
    Random,

    /// A page [`Cursor`](crate::Cursor) that this store did not issue for
    /// this user under its current key (garbage, tampered, another user's,
    /// or minted before a key rotation). Nothing was read; start again from
    /// the first page. A web application answers it with `400 Bad Request`.
    #[error("invalid page cursor: start again from the first page")]
    InvalidCursor,
}

/// Shorthand for `Result<T, stored_session::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status a web page answers this failure with, the one
    /// mapping used by the framework adapters' default error response and
    /// the admin page:
    ///
    /// * `503` when retrying later may work: no pooled connection came
    ///   free in time, the database did not answer in time, or the
    ///   connection to it was lost mid-way;
    /// * `413` for a session over [`Config::max_payload`](crate::Config);
    /// * `400` for a page cursor this store did not issue;
    /// * `500` otherwise.
    #[cfg(any(feature = "adapters", feature = "admin"))]
    pub(crate) fn http_status(&self) -> u16 {
        // Exhaustive on purpose: a new variant needs a decision here.
        match self {
            Error::PoolTimeout { .. } | Error::Timeout { .. } => 503,
            Error::Database(_) if self.is_connection_failure() => 503,
            Error::PayloadTooLarge { .. } => 413,
            Error::InvalidCursor => 400,
            Error::Database(_)
            | Error::Encode(_)
            | Error::Decode { .. }
            | Error::Config(_)
            | Error::Migration(_)
            | Error::IdsExhausted
            | Error::TaskAborted(_)
            | Error::Random => 500,
        }
    }

    /// The error with the passwords of `url` removed from its text (see
    /// `redact`): for errors raised while opening a connection to `url`.
    pub(crate) fn scrubbed(self, url: &str) -> Self {
        match self {
            Error::PoolTimeout { timeout, message } => Error::PoolTimeout {
                timeout,
                message: crate::redact::scrub(&message, url),
            },
            Error::Config(message) => Error::Config(crate::redact::scrub(&message, url)),
            Error::Migration(message) => Error::Migration(crate::redact::scrub(&message, url)),
            other => other,
        }
    }

    /// Whether the error means the connection itself is unusable (so the
    /// operation may be retried once on a fresh connection).
    pub(crate) fn is_connection_failure(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match self {
            Error::Database(D::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                ) || {
                    let m = info.message().to_ascii_lowercase();
                    m.contains("server closed the connection")
                        || m.contains("terminating connection")
                        || m.contains("server has gone away")
                        || m.contains("lost connection")
                        || m.contains("connection was killed")
                        || m.contains("no connection to the server")
                }
            }
            Error::Database(D::BrokenTransactionManager) => true,
            _ => false,
        }
    }
}

#[cfg(all(test, any(feature = "adapters", feature = "admin")))]
mod tests {
    use super::*;

    #[test]
    fn http_status_of_every_variant() {
        let waits = Duration::from_secs(5);
        let lost = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_owned()),
        );
        let retry_later = [
            Error::PoolTimeout {
                timeout: waits,
                message: "timed out".into(),
            },
            Error::Timeout { timeout: waits },
            Error::Database(lost),
        ];
        let failed = [
            Error::Database(diesel::result::Error::NotFound),
            Error::Encode(rmp_serde::encode::Error::Syntax("x".into())),
            Error::Decode {
                key: "k".into(),
                source: rmp_serde::decode::Error::Syntax("x".into()),
            },
            Error::Config("x".into()),
            Error::Migration("x".into()),
            Error::IdsExhausted,
            Error::TaskAborted("x"),
            Error::Random,
        ];
        for error in &retry_later {
            assert_eq!(error.http_status(), 503, "{error:?}");
        }
        for error in &failed {
            assert_eq!(error.http_status(), 500, "{error:?}");
        }
        assert_eq!(
            Error::PayloadTooLarge { size: 2, max: 1 }.http_status(),
            413
        );
        assert_eq!(Error::InvalidCursor.http_status(), 400);
    }
}
