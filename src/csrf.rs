//! CSRF protection for the application's own forms and endpoints (as Rails'
//! `protect_from_forgery`): a per-session token plus the browser's Fetch
//! Metadata and `Origin` headers, checked by a framework-neutral verifier.
//!
//! * The token is [`Session::csrf_token`]: created on first use, 256 random
//!   bits as 43 URL-safe characters, stored encrypted in the session,
//!   rotated by [`Session::renew`], gone with [`Session::destroy`].
//! * [`Csrf::verify`] checks one request. Safe methods (`GET`, `HEAD`,
//!   `OPTIONS`, `TRACE`) always pass; every other method must pass both:
//!   1. **Where it comes from.** `Sec-Fetch-Site: same-origin` or `none`
//!      passes; any other value (`cross-site`, `same-site`, unknown) is
//!      refused ([`CsrfRejection::CrossSite`]) unless the `Origin` is one
//!      of the [allowed origins](Csrf::with_allowed_origin). Without
//!      `Sec-Fetch-Site`, an `Origin` header must name the request's own
//!      `Host` or an allowed origin; any other origin, `null` included, is
//!      refused ([`CsrfRejection::ForeignOrigin`]). A request with neither
//!      header (curl, scripts, old browsers) passes this check.
//!   2. **The token.** The header (`X-CSRF-Token` by default) if present,
//!      else the form field your code passes (`csrf_token` by default) must
//!      equal the session's token, compared in constant time. A request
//!      without browser headers needs it too: only the token proves the
//!      request was made by a page of this site.
//! * The verifier reads no body: the application (or adapter) parses the
//!   form and passes the field's value. It never logs, and a rejection
//!   names the rule, never a token.
//!
//! [`Csrf::verify_origin`] runs the first check alone, for endpoints that
//! rely on Fetch Metadata only (as Go's `CrossOriginProtection`): it refuses
//! what browsers mark as cross-site but lets non-browser clients through.
//!
//! ```
//! use std::collections::HashMap;
//! use stored_session::csrf::{Csrf, CsrfRejection};
//! # use stored_session::{Keyring, SessionStore};
//! # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
//!
//! let csrf = Csrf::new();
//! let mut session = store.load(None)?;
//! // GET /form: render the token into the form.
//! let token = session.csrf_token();
//!
//! // POST /form, same origin, with the field.
//! let headers = HashMap::from([("Host", "example.com"), ("Origin", "https://example.com")]);
//! let lookup = |name: &str| headers.get(name).copied();
//! assert_eq!(csrf.verify(&session, "POST", lookup, Some(&token)), Ok(()));
//! assert_eq!(csrf.verify(&session, "POST", lookup, None), Err(CsrfRejection::MissingToken));
//! assert_eq!(csrf.verify(&session, "POST", lookup, Some("forged")), Err(CsrfRejection::InvalidToken));
//!
//! // A cross-site POST is refused even with the right token.
//! let cross = HashMap::from([("Sec-Fetch-Site", "cross-site"), ("Origin", "https://evil.example")]);
//! let lookup = |name: &str| cross.get(name).copied();
//! assert_eq!(csrf.verify(&session, "POST", lookup, Some(&token)), Err(CsrfRejection::CrossSite));
//! assert_eq!(CsrfRejection::CrossSite.http_status(), 403);
//! # Ok::<(), stored_session::Error>(())
//! ```
//!
//! Header names are passed to the lookup as written above (`Host`,
//! `Origin`, `Sec-Fetch-Site`, and the token header); match them
//! case-insensitively, as HTTP header names are (the `http`, rouille and
//! Rocket header maps all do). Over HTTP/2, answer `Host` with the
//! request's `:authority`.

use std::fmt;

use ring::hmac;

use crate::error::{Error, Result};
use crate::session::Session;

/// The form field the token is read from by default.
pub const DEFAULT_FIELD: &str = "csrf_token";

/// The header the token is read from by default.
pub const DEFAULT_HEADER: &str = "X-CSRF-Token";

/// Whether `method` is safe (RFC 9110: `GET`, `HEAD`, `OPTIONS`, `TRACE`,
/// exactly, in upper case): the verifier lets safe requests through
/// unchecked, so they must not change anything. Every other method,
/// unknown and lower-case ones included, is checked.
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// The CSRF verifier: which form field and header carry the token, and
/// which origins besides the request's own host may send unsafe requests.
/// Build one at start-up and share it; see the [module docs](self) for the
/// rules.
///
/// ```
/// use stored_session::csrf::Csrf;
///
/// let csrf = Csrf::new()
///     .with_field("authenticity_token")
///     .with_header("X-XSRF-Token")
///     .with_allowed_origin("https://app.example.com")?;
/// assert_eq!(csrf.field(), "authenticity_token");
/// assert_eq!(csrf.header(), "X-XSRF-Token");
/// assert_eq!(csrf.allowed_origins().collect::<Vec<_>>(), ["https://app.example.com"]);
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csrf {
    field: String,
    header: String,
    /// Normalized origins (`scheme://host[:port]`, lower case, default port
    /// dropped).
    origins: Vec<String>,
}

impl Default for Csrf {
    fn default() -> Self {
        Csrf::new()
    }
}

/// Why [`Csrf::verify`] refused a request. Every rejection answers
/// `403 Forbidden` ([`http_status`](CsrfRejection::http_status)); the
/// variants say which rule failed, for logs and messages, and never carry
/// a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CsrfRejection {
    /// `Sec-Fetch-Site` says the request was made by another site
    /// (`cross-site` or `same-site`, or a value this crate does not know),
    /// and its `Origin` is not an allowed one.
    CrossSite,
    /// The `Origin` header names another origin than the request's `Host`
    /// and the allowed ones (`Origin: null` included).
    ForeignOrigin,
    /// Neither the token header nor the form field carried a token.
    MissingToken,
    /// The session has no token: it expired or ended since the form was
    /// rendered, or the cookie was not sent. Reloading the form helps.
    NoSessionToken,
    /// A token was sent, but it is not the session's.
    InvalidToken,
}

impl CsrfRejection {
    /// The HTTP status to answer with: always 403.
    pub fn http_status(&self) -> u16 {
        403
    }

    /// A short, fixed description of the failed rule (no request data).
    pub fn reason(&self) -> &'static str {
        match self {
            CsrfRejection::CrossSite => "the browser marked the request as cross-site",
            CsrfRejection::ForeignOrigin => "the request's Origin is not this site",
            CsrfRejection::MissingToken => "the request carries no CSRF token",
            CsrfRejection::NoSessionToken => "the session has no CSRF token (reload the form)",
            CsrfRejection::InvalidToken => "the CSRF token does not match the session's",
        }
    }
}

impl fmt::Display for CsrfRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CSRF check failed: {}", self.reason())
    }
}

impl std::error::Error for CsrfRejection {}

impl Csrf {
    /// A verifier reading the token from the form field [`DEFAULT_FIELD`]
    /// or the header [`DEFAULT_HEADER`], accepting browser requests from
    /// the request's own host only.
    pub fn new() -> Self {
        Csrf {
            field: DEFAULT_FIELD.to_owned(),
            header: DEFAULT_HEADER.to_owned(),
            origins: Vec::new(),
        }
    }

    /// Sets the form field name the application reads the token from (the
    /// verifier only reports it, through [`field`](Csrf::field), since the
    /// application passes the field's value).
    pub fn with_field(mut self, name: impl Into<String>) -> Self {
        self.field = name.into();
        self
    }

    /// Sets the header the token is read from.
    pub fn with_header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into();
        self
    }

    /// Allows unsafe requests whose `Origin` is `origin`
    /// (`scheme://host[:port]`, e.g. `https://example.com`), in addition to
    /// the request's own `Host`. Needed when a proxy rewrites `Host`, or
    /// for another site of yours that posts here (a `same-site` or
    /// `cross-site` request from it passes the Fetch Metadata check). The
    /// token is still required.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `origin` is not `scheme://host[:port]` (a
    /// path, query, user info or `null` is refused).
    pub fn with_allowed_origin(mut self, origin: &str) -> Result<Self> {
        let normalized = normalize_origin(origin).ok_or_else(|| {
            Error::Config(format!(
                "{origin:?} is not an origin: expected scheme://host[:port], as in https://example.com"
            ))
        })?;
        if !self.origins.contains(&normalized.full) {
            self.origins.push(normalized.full);
        }
        Ok(self)
    }

    /// The form field name the token is expected in.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The header the token is read from.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The allowed origins besides the request's own host, normalized
    /// (lower case, default port dropped).
    pub fn allowed_origins(&self) -> impl Iterator<Item = &str> {
        self.origins.iter().map(String::as_str)
    }

    /// Checks one request against the session: passes safe methods;
    /// for any other, the Fetch Metadata / `Origin` check
    /// ([`verify_origin`](Csrf::verify_origin)) and then the token, taken
    /// from the [header](Csrf::header) if the request has it, else from
    /// `form_token` (the value of the [form field](Csrf::field), which
    /// the caller parsed from the body; `None` when absent). An empty value
    /// counts as absent.
    ///
    /// `headers` looks a request header up by name (case-insensitively);
    /// see the [module docs](self) for the names it is asked for.
    ///
    /// ```
    /// use stored_session::csrf::{Csrf, CsrfRejection};
    /// # use stored_session::{CookieAction, Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// # let mut session = store.load(None)?;
    /// # let token = session.csrf_token();
    /// # let CookieAction::Set(id, _) = store.save(&mut session)? else { unreachable!() };
    /// let csrf = Csrf::new();
    /// // A later request: the session is loaded from its cookie, and a
    /// // fetch() call sends the token in the header.
    /// let session = store.load(Some(id.as_cookie_value()))?;
    /// let headers = [("Host", "shop.test"), ("Sec-Fetch-Site", "same-origin"), ("X-CSRF-Token", token.as_str())];
    /// let lookup = |name: &str| {
    ///     headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    /// };
    /// assert_eq!(csrf.verify(&session, "DELETE", lookup, None), Ok(()));
    /// // Safe methods are never checked: they must not change anything.
    /// assert_eq!(csrf.verify(&session, "GET", |_| None, None), Ok(()));
    /// assert_eq!(csrf.verify(&session, "PUT", |_| None, None), Err(CsrfRejection::MissingToken));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The [`CsrfRejection`] of the first rule the request fails; answer
    /// it with 403 and change nothing.
    pub fn verify<'h>(
        &self,
        session: &Session,
        method: &str,
        headers: impl Fn(&str) -> Option<&'h str>,
        form_token: Option<&str>,
    ) -> std::result::Result<(), CsrfRejection> {
        if is_safe_method(method) {
            return Ok(());
        }
        self.verify_origin(method, &headers)?;
        let sent = headers(&self.header)
            .filter(|t| !t.is_empty())
            .or(form_token.filter(|t| !t.is_empty()))
            .ok_or(CsrfRejection::MissingToken)?;
        let expected = session.csrf_secret().ok_or(CsrfRejection::NoSessionToken)?;
        if tokens_equal(expected, sent) {
            Ok(())
        } else {
            Err(CsrfRejection::InvalidToken)
        }
    }

    /// The Fetch Metadata / `Origin` check alone (no token): passes safe
    /// methods, same-origin requests, and requests without browser headers;
    /// refuses what a browser marks as coming from another site, and a
    /// foreign or `null` `Origin`. See the [module docs](self).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use stored_session::csrf::{Csrf, CsrfRejection};
    ///
    /// let csrf = Csrf::new();
    /// let curl: HashMap<&str, &str> = HashMap::from([("Host", "example.com")]);
    /// assert_eq!(csrf.verify_origin("POST", |n| curl.get(n).copied()), Ok(()));
    /// let framed = HashMap::from([("Host", "example.com"), ("Origin", "null")]);
    /// assert_eq!(
    ///     csrf.verify_origin("POST", |n| framed.get(n).copied()),
    ///     Err(CsrfRejection::ForeignOrigin)
    /// );
    /// ```
    ///
    /// # Errors
    ///
    /// [`CsrfRejection::CrossSite`] or [`CsrfRejection::ForeignOrigin`].
    pub fn verify_origin<'h>(
        &self,
        method: &str,
        headers: impl Fn(&str) -> Option<&'h str>,
    ) -> std::result::Result<(), CsrfRejection> {
        if is_safe_method(method) {
            return Ok(());
        }
        let origin = headers("Origin").map(str::trim);
        if let Some(site) = headers("Sec-Fetch-Site") {
            let site = site.trim();
            if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") {
                return Ok(());
            }
            return match origin {
                Some(origin) if self.allowed(origin) => Ok(()),
                _ => Err(CsrfRejection::CrossSite),
            };
        }
        match origin {
            None => Ok(()),
            Some(origin) if self.allowed(origin) || same_host(origin, headers("Host")) => Ok(()),
            Some(_) => Err(CsrfRejection::ForeignOrigin),
        }
    }

    /// Whether `origin` (a header value) is one of the allowed origins.
    fn allowed(&self, origin: &str) -> bool {
        normalize_origin(origin).is_some_and(|o| self.origins.contains(&o.full))
    }
}

/// An origin split for comparison, lower case, default port dropped.
struct Origin {
    /// `scheme://authority`.
    full: String,
    scheme_len: usize,
}

impl Origin {
    fn scheme(&self) -> &str {
        &self.full[..self.scheme_len]
    }

    fn authority(&self) -> &str {
        &self.full[self.scheme_len + 3..]
    }
}

/// Parses `scheme://host[:port]` (a trailing `/` is tolerated); `None` for
/// anything else, `null` included.
fn normalize_origin(text: &str) -> Option<Origin> {
    let text = text.trim();
    let (scheme, rest) = text.split_once("://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let authority_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\'));
    if !scheme_ok || !authority_ok {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let authority = without_default_port(&scheme, &rest.to_ascii_lowercase()).to_owned();
    Some(Origin {
        scheme_len: scheme.len(),
        full: format!("{scheme}://{authority}"),
    })
}

/// `authority` without the default port of `scheme` (`:443` for https,
/// `:80` for http).
fn without_default_port<'a>(scheme: &str, authority: &'a str) -> &'a str {
    let default = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return authority,
    };
    authority.strip_suffix(default).unwrap_or(authority)
}

/// Whether the `Origin` header names the request's own `Host`.
fn same_host(origin: &str, host: Option<&str>) -> bool {
    let (Some(origin), Some(host)) = (normalize_origin(origin), host) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    !host.is_empty() && without_default_port(origin.scheme(), &host) == origin.authority()
}

/// Constant-time equality of the session's token and a sent one: both are
/// MACed under the (secret) expected token and the tags compared by ring in
/// constant time, so neither the position of the first differing byte nor
/// the sent length leaks anything about the token.
fn tokens_equal(expected: &str, sent: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, expected.as_bytes());
    let tag = hmac::sign(&key, expected.as_bytes());
    hmac::verify(&key, sent.as_bytes(), tag.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A session holding a token, and its token.
    fn session() -> (Session, String) {
        let mut s = Session::fresh(0, false, Default::default());
        let token = s.csrf_token();
        (s, token)
    }

    fn lookup<'a>(headers: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        let map: HashMap<String, &'a str> = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), *v))
            .collect();
        move |name: &str| map.get(&name.to_ascii_lowercase()).copied()
    }

    const SAME: &[(&str, &str)] = &[
        ("Host", "example.com"),
        ("Origin", "https://example.com"),
        ("Sec-Fetch-Site", "same-origin"),
    ];

    #[test]
    fn safe_methods_pass_without_anything() {
        let csrf = Csrf::new();
        let (s, _) = session();
        let cross = [
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "https://evil.test"),
        ];
        for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            assert_eq!(csrf.verify(&s, method, lookup(&cross), None), Ok(()));
            assert_eq!(csrf.verify_origin(method, lookup(&cross)), Ok(()));
        }
        // Without even a session token.
        let empty = Session::fresh(0, false, Default::default());
        assert_eq!(csrf.verify(&empty, "GET", lookup(&[]), None), Ok(()));
    }

    #[test]
    fn unsafe_methods_need_the_token() {
        let csrf = Csrf::new();
        let (s, token) = session();
        for method in ["POST", "PUT", "PATCH", "DELETE", "PROPFIND", "get", ""] {
            assert_eq!(
                csrf.verify(&s, method, lookup(SAME), None),
                Err(CsrfRejection::MissingToken),
                "{method}"
            );
            assert_eq!(csrf.verify(&s, method, lookup(SAME), Some(&token)), Ok(()));
        }
    }

    #[test]
    fn missing_empty_and_wrong_tokens_are_refused() {
        let csrf = Csrf::new();
        let (s, token) = session();
        let post = |field: Option<&str>| csrf.verify(&s, "POST", lookup(SAME), field);
        assert_eq!(post(None), Err(CsrfRejection::MissingToken));
        assert_eq!(post(Some("")), Err(CsrfRejection::MissingToken));
        assert_eq!(post(Some("wrong")), Err(CsrfRejection::InvalidToken));
        let (_, other) = session();
        assert_eq!(post(Some(&other)), Err(CsrfRejection::InvalidToken));
        // One character off, a prefix, an extension, another case.
        let mut off = token.clone().into_bytes();
        off[42] = if off[42] == b'A' { b'B' } else { b'A' };
        let off = String::from_utf8(off).unwrap();
        for bad in [
            off,
            token[..42].to_owned(),
            format!("{token}A"),
            token.to_ascii_uppercase(),
            format!(" {token}"),
        ] {
            if bad != token {
                assert_eq!(post(Some(&bad)), Err(CsrfRejection::InvalidToken), "{bad}");
            }
        }
        assert_eq!(post(Some(&token)), Ok(()));
    }

    #[test]
    fn token_via_header_or_field() {
        let csrf = Csrf::new();
        let (s, token) = session();
        let with_header = [("Host", "example.com"), ("x-csrf-token", token.as_str())];
        assert_eq!(csrf.verify(&s, "POST", lookup(&with_header), None), Ok(()));
        // The header, when present, is the one checked.
        let wrong_header = [("Host", "example.com"), ("X-CSRF-Token", "nope")];
        assert_eq!(
            csrf.verify(&s, "POST", lookup(&wrong_header), Some(&token)),
            Err(CsrfRejection::InvalidToken)
        );
        // An empty header falls back to the field.
        let empty_header = [("X-CSRF-Token", "")];
        assert_eq!(
            csrf.verify(&s, "POST", lookup(&empty_header), Some(&token)),
            Ok(())
        );
        // A configured header replaces the default one.
        let custom = Csrf::new().with_header("X-XSRF-Token");
        assert_eq!(
            custom.verify(&s, "POST", lookup(&with_header), None),
            Err(CsrfRejection::MissingToken)
        );
        let xsrf = [("X-XSRF-Token", token.as_str())];
        assert_eq!(custom.verify(&s, "POST", lookup(&xsrf), None), Ok(()));
    }

    #[test]
    fn a_session_without_a_token_refuses_every_token() {
        let csrf = Csrf::new();
        let s = Session::fresh(0, false, Default::default());
        let (_, token) = session();
        assert_eq!(
            csrf.verify(&s, "POST", lookup(SAME), Some(&token)),
            Err(CsrfRejection::NoSessionToken)
        );
        assert_eq!(
            csrf.verify(&s, "POST", lookup(SAME), None),
            Err(CsrfRejection::MissingToken)
        );
    }

    #[test]
    fn fetch_metadata_decides_when_present() {
        let csrf = Csrf::new();
        let (s, token) = session();
        for (site, expected) in [
            ("same-origin", Ok(())),
            ("none", Ok(())),
            ("Same-Origin", Ok(())),
            ("cross-site", Err(CsrfRejection::CrossSite)),
            ("same-site", Err(CsrfRejection::CrossSite)),
            ("something-new", Err(CsrfRejection::CrossSite)),
            ("", Err(CsrfRejection::CrossSite)),
        ] {
            // Whatever the Origin says: the browser's own header wins.
            for origin in [None, Some("https://example.com"), Some("https://evil.test")] {
                let mut headers = vec![("Host", "example.com"), ("Sec-Fetch-Site", site)];
                headers.extend(origin.map(|o| ("Origin", o)));
                assert_eq!(
                    csrf.verify(&s, "POST", lookup(&headers), Some(&token)),
                    expected,
                    "{site} {origin:?}"
                );
            }
        }
    }

    #[test]
    fn origin_decides_without_fetch_metadata() {
        let csrf = Csrf::new();
        let (s, token) = session();
        let check = |host: Option<&str>, origin: &str| {
            let mut headers = vec![("Origin", origin)];
            headers.extend(host.map(|h| ("Host", h)));
            csrf.verify(&s, "POST", lookup(&headers), Some(&token))
        };
        let foreign = Err(CsrfRejection::ForeignOrigin);
        assert_eq!(check(Some("example.com"), "https://example.com"), Ok(()));
        assert_eq!(check(Some("Example.COM"), "https://example.com"), Ok(()));
        assert_eq!(
            check(Some("example.com:8443"), "https://example.com:8443"),
            Ok(())
        );
        assert_eq!(
            check(Some("example.com:443"), "https://example.com"),
            Ok(())
        );
        assert_eq!(check(Some("example.com"), "http://example.com:80"), Ok(()));
        assert_eq!(check(Some("[::1]:8000"), "http://[::1]:8000"), Ok(()));
        assert_eq!(check(Some("example.com"), "https://evil.test"), foreign);
        assert_eq!(
            check(Some("example.com"), "https://example.com.evil.test"),
            foreign
        );
        assert_eq!(
            check(Some("example.com"), "https://sub.example.com"),
            foreign
        );
        assert_eq!(
            check(Some("example.com:8443"), "https://example.com"),
            foreign
        );
        assert_eq!(
            check(Some("example.com"), "https://example.com:8443"),
            foreign
        );
        assert_eq!(check(Some("example.com"), "null"), foreign);
        assert_eq!(check(Some("example.com"), ""), foreign);
        assert_eq!(check(Some("example.com"), "example.com"), foreign);
        assert_eq!(
            check(Some("example.com"), "https://user@example.com"),
            foreign
        );
        assert_eq!(check(None, "https://example.com"), foreign);
        assert_eq!(check(Some(""), "https://"), foreign);
    }

    #[test]
    fn requests_without_browser_headers_pass_the_origin_check_only() {
        let csrf = Csrf::new();
        let (s, token) = session();
        let curl = [("Host", "example.com"), ("User-Agent", "curl/8.5.0")];
        assert_eq!(csrf.verify_origin("POST", lookup(&curl)), Ok(()));
        assert_eq!(
            csrf.verify(&s, "POST", lookup(&curl), None),
            Err(CsrfRejection::MissingToken)
        );
        assert_eq!(csrf.verify(&s, "POST", lookup(&curl), Some(&token)), Ok(()));
    }

    #[test]
    fn cross_site_is_refused_before_the_token_is_looked_at() {
        let csrf = Csrf::new();
        let (s, token) = session();
        let cross = [
            ("Host", "example.com"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "https://evil.test"),
            ("X-CSRF-Token", token.as_str()),
        ];
        assert_eq!(
            csrf.verify(&s, "POST", lookup(&cross), Some(&token)),
            Err(CsrfRejection::CrossSite)
        );
        assert_eq!(
            csrf.verify_origin("DELETE", lookup(&cross)),
            Err(CsrfRejection::CrossSite)
        );
    }

    #[test]
    fn allowed_origins() {
        let csrf = Csrf::new()
            .with_allowed_origin("HTTPS://App.Example.com:443/")
            .unwrap()
            .with_allowed_origin("https://app.example.com")
            .unwrap();
        assert_eq!(
            csrf.allowed_origins().collect::<Vec<_>>(),
            ["https://app.example.com"]
        );
        let (s, token) = session();
        // A proxy rewrote Host: the configured origin still passes.
        let proxied = [
            ("Host", "127.0.0.1:8000"),
            ("Origin", "https://app.example.com"),
        ];
        assert_eq!(
            csrf.verify(&s, "POST", lookup(&proxied), Some(&token)),
            Ok(())
        );
        // A sibling site the app trusts passes Fetch Metadata.
        let sibling = [
            ("Host", "api.example.com"),
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "https://app.example.com"),
        ];
        assert_eq!(
            csrf.verify(&s, "POST", lookup(&sibling), Some(&token)),
            Ok(())
        );
        // Others do not, and the token is still required.
        let other = [
            ("Host", "api.example.com"),
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "https://blog.example.com"),
        ];
        assert_eq!(
            csrf.verify(&s, "POST", lookup(&other), Some(&token)),
            Err(CsrfRejection::CrossSite)
        );
        assert_eq!(
            csrf.verify(&s, "POST", lookup(&sibling), None),
            Err(CsrfRejection::MissingToken)
        );
        for bad in [
            "null",
            "example.com",
            "https://",
            "https://a.test/path",
            "https://u@a.test",
            "https://a.test?x",
            "",
        ] {
            let err = Csrf::new().with_allowed_origin(bad).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{bad}");
        }
    }

    #[test]
    fn rejections_say_403_and_carry_no_request_data() {
        let all = [
            CsrfRejection::CrossSite,
            CsrfRejection::ForeignOrigin,
            CsrfRejection::MissingToken,
            CsrfRejection::NoSessionToken,
            CsrfRejection::InvalidToken,
        ];
        for r in all {
            assert_eq!(r.http_status(), 403);
            assert!(r.to_string().starts_with("CSRF check failed: "));
        }
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let (s, token) = session();
        assert!(!format!("{s:?}").contains(&token));
        assert!(!format!("{:?}", Csrf::new()).contains(&token));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "ab"));
        assert!(!tokens_equal("abc", "abcd"));
        assert!(!tokens_equal("abc", ""));
    }
}
