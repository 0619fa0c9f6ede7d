//! What a request answers when its session fails: the framework-neutral
//! [`ErrorResponse`], the [`Stage`] the failure happened in, the default
//! mapping, and the one log line.

use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::id::StoredId;

/// Where in the request cycle a session operation failed, as the error
/// handler ([`Sessions::with_error_handler`](super::Sessions::with_error_handler))
/// is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Loading the session failed, so the handler could not use it (the
    /// database or the pool failed). The handler's work, if it ran, is not
    /// saved.
    ///
    /// In rouille and `http`, a failed load reaches the handler as the
    /// `Err` of [`LazySession::load`](super::LazySession::load) (or of a
    /// shortcut that loads); when the handler passes it on with `?`, the
    /// adapter reports it as `Load`. In Rocket, the
    /// [`SessionGuard`](super::rocket::SessionGuard) fails.
    Load,
    /// The handler returned a [`crate::Error`] of its own (for example
    /// [`Error::Decode`] from [`Session::get`](crate::Session::get)), after
    /// its session loaded or without loading it. Nothing it changed is
    /// saved.
    Handler,
    /// The handler succeeded, but committing its session at the end of the
    /// request ([`SessionStore::save`](crate::SessionStore::save)) failed:
    /// for example [`Error::PayloadTooLarge`] or a database outage. Nothing
    /// the handler changed in the session was saved, so its response is not
    /// sent.
    Commit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Load => "load",
            Stage::Handler => "handler",
            Stage::Commit => "commit",
        })
    }
}

/// The response an adapter sends for a failed session operation: a status,
/// a `Content-Type`, extra headers and a text body, which every adapter
/// turns into its own framework's response.
///
/// An application builds one in its error handler
/// ([`Sessions::with_error_handler`](super::Sessions::with_error_handler));
/// [`ErrorResponse::for_error`] is the default. Values that could break the
/// response are refused when set, the same way on every adapter: a status
/// outside `100..=999` becomes `500`; a header whose name is not an HTTP
/// token or whose value holds anything but visible ASCII, spaces and tabs
/// (no CR or LF) is left out, as are the framing headers the server writes
/// itself (`Content-Length`, `Transfer-Encoding`, `Connection`); each
/// refusal is logged at `warn` level.
///
/// ```
/// use stored_session::adapters::ErrorResponse;
///
/// let response = ErrorResponse::json(503, r#"{"error":"try again"}"#)
///     .with_header("Retry-After", "5")
///     .with_header("Bad\nName", "dropped");
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.content_type(), "application/json");
/// assert_eq!(response.headers().collect::<Vec<_>>(), [("Retry-After", "5")]);
/// assert_eq!(response.body(), r#"{"error":"try again"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl ErrorResponse {
    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        ErrorResponse {
            status: valid_status(status),
            content_type: "text/plain; charset=utf-8".to_owned(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An `application/json` response (`body` is sent as given).
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        ErrorResponse::text(status, body).with_content_type("application/json")
    }

    /// A `text/html; charset=utf-8` response (`body` is sent as given:
    /// escape what you put in it).
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        ErrorResponse::text(status, body).with_content_type("text/html; charset=utf-8")
    }

    /// What the adapters answer when the application sets no error
    /// handler: the status of the error's kind and its reason phrase as a
    /// plain-text line. The details stay in the log.
    ///
    /// | error | status | body |
    /// |---|---|---|
    /// | [`Error::PoolTimeout`], [`Error::Timeout`], a connection lost mid-way or a write conflict still lost after the store's retries ([`Error::Database`]) | `503` | `service unavailable` |
    /// | [`Error::PayloadTooLarge`] | `413` | `payload too large` |
    /// | [`Error::InvalidCursor`] | `400` | `bad request` |
    /// | any other | `500` | `internal server error` |
    ///
    /// ```
    /// use stored_session::adapters::ErrorResponse;
    /// use stored_session::Error;
    ///
    /// let response = ErrorResponse::for_error(&Error::PayloadTooLarge { size: 3_000_000, max: 1_048_576 });
    /// assert_eq!((response.status(), response.body()), (413, "payload too large\n"));
    /// ```
    pub fn for_error(error: &Error) -> Self {
        let status = error.http_status();
        let reason = match status {
            400 => "bad request\n",
            413 => "payload too large\n",
            503 => "service unavailable\n",
            _ => "internal server error\n",
        };
        ErrorResponse::text(status, reason)
    }

    /// Replaces the `Content-Type` (left unchanged, with a warning, when
    /// the value is not a valid header value).
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        let content_type = content_type.into();
        if valid_value(&content_type) {
            self.content_type = content_type;
        } else {
            log::warn!(target: "stored_session", "error response: invalid Content-Type value left out");
        }
        self
    }

    /// Adds a header (a `Content-Type` replaces the current one, see
    /// [`with_content_type`](ErrorResponse::with_content_type)). An invalid
    /// name or value, or a framing header (`Content-Length`,
    /// `Transfer-Encoding`, `Connection`), is left out with a warning.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if name.eq_ignore_ascii_case("content-type") {
            return self.with_content_type(value);
        }
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f));
        if framing || !valid_name(&name) || !valid_value(&value) {
            log::warn!(target: "stored_session", "error response: header {:?} left out (invalid or set by the server)", name.escape_debug().to_string());
        } else {
            self.headers.push((name, value));
        }
        self
    }

    /// The status code (`100..=999`).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The `Content-Type`.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The headers added with [`with_header`](ErrorResponse::with_header),
    /// in order (without the `Content-Type`).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body.
    pub fn body(&self) -> &str {
        &self.body
    }
}

fn valid_status(status: u16) -> u16 {
    if (100..=999).contains(&status) {
        status
    } else {
        log::warn!(target: "stored_session", "error response: status {status} is not an HTTP status; answering 500");
        500
    }
}

/// An RFC 9110 token.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, spaces and tabs: a value every adapter's HTTP layer takes
/// as it is (no CR or LF, so no header can be injected).
fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The application's error handler.
pub(crate) type ErrorHandler = Arc<dyn Fn(&Error, Stage) -> ErrorResponse + Send + Sync>;

/// Runs the application's handler, or the default. A handler that panics
/// gets the default response (and an error log line), never a crashed
/// request.
pub(crate) fn respond(
    handler: Option<&ErrorHandler>,
    error: &Error,
    stage: Stage,
) -> ErrorResponse {
    let Some(handler) = handler else {
        return ErrorResponse::for_error(error);
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(error, stage))) {
        Ok(response) => response,
        Err(_) => {
            log::error!(target: "stored_session", "the session error handler panicked; answering with the default response");
            ErrorResponse::for_error(error)
        }
    }
}

/// Logs a failed session operation at `error` level, target
/// `stored_session`, with the session's hashed id when there is one
/// (errors never carry an id, and a raw id is never logged).
pub(crate) fn log_failure(stage: Stage, sid: Option<StoredId>, error: &Error) {
    match sid {
        Some(sid) => {
            log::error!(target: "stored_session", "session {stage} failed (sid: \"{sid}\"): {error}")
        }
        None => {
            log::error!(target: "stored_session", "session {stage} failed (no stored session): {error}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_would_break_a_response() {
        let r = ErrorResponse::text(42, "x")
            .with_header("X-Ok", "a b\tc")
            .with_header("X-Crlf", "a\r\nSet-Cookie: id=evil")
            .with_header("Bad Name", "v")
            .with_header("", "v")
            .with_header("X-Utf8", "é")
            .with_header("content-length", "0")
            .with_header("Transfer-Encoding", "chunked")
            .with_header("Connection", "keep-alive")
            .with_header("Content-Type", "text/csv")
            .with_content_type("text/html\n");
        assert_eq!(r.status(), 500);
        assert_eq!(r.content_type(), "text/csv");
        assert_eq!(r.headers().collect::<Vec<_>>(), [("X-Ok", "a b\tc")]);
        assert_eq!(ErrorResponse::text(1000, "").status(), 500);
        assert_eq!(ErrorResponse::text(100, "").status(), 100);
        assert_eq!(ErrorResponse::text(999, "").status(), 999);
        assert_eq!(
            ErrorResponse::html(507, "<p>full</p>").content_type(),
            "text/html; charset=utf-8"
        );
    }

    #[test]
    fn default_responses() {
        let cases = [
            (
                Error::PayloadTooLarge { size: 2, max: 1 },
                413,
                "payload too large\n",
            ),
            (Error::InvalidCursor, 400, "bad request\n"),
            (
                Error::Timeout {
                    timeout: std::time::Duration::from_secs(1),
                },
                503,
                "service unavailable\n",
            ),
            (Error::IdsExhausted, 500, "internal server error\n"),
        ];
        for (error, status, body) in cases {
            let r = respond(None, &error, Stage::Commit);
            assert_eq!((r.status(), r.body()), (status, body), "{error:?}");
            assert_eq!(r.content_type(), "text/plain; charset=utf-8");
        }
    }

    #[test]
    fn a_panicking_handler_gets_the_default() {
        let handler: ErrorHandler = Arc::new(|_, _| panic!("the app's handler broke"));
        let r = respond(Some(&handler), &Error::InvalidCursor, Stage::Handler);
        assert_eq!(r, ErrorResponse::for_error(&Error::InvalidCursor));
        let handler: ErrorHandler =
            Arc::new(|_, stage| ErrorResponse::text(507, stage.to_string()));
        let r = respond(Some(&handler), &Error::InvalidCursor, Stage::Load);
        assert_eq!((r.status(), r.body()), (507, "load"));
    }
}
