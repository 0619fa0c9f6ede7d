//! The one cookie policy every adapter uses: how the session cookie is named,
//! written, removed, and found in a request's `Cookie` headers.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use ::cookie::time::{Duration as CookieDuration, OffsetDateTime};
use ::cookie::{Cookie, SameSite};

use crate::cookie_header::cookie_pairs;
use crate::error::{Error, Result};
use crate::expiry::CookieLifetime;
use crate::id::SessionId;

/// The prefix that makes browsers pin a cookie to the exact host that set it,
/// over HTTPS, for the whole site (`Secure`, `Path=/`, no `Domain`).
pub const HOST_PREFIX: &str = "__Host-";

/// How the session cookie is written: name, flags, scope and lifetime.
///
/// One policy serves every adapter. The defaults are the safe ones:
///
/// | attribute | default | setter |
/// |---|---|---|
/// | name | `id` (says nothing about the framework or the store) | [`with_name`](CookiePolicy::with_name) |
/// | `HttpOnly` | on | [`with_http_only`](CookiePolicy::with_http_only) |
/// | `SameSite` | `Lax` | [`with_same_site`](CookiePolicy::with_same_site) |
/// | `Secure` | on (turn off only for plain-HTTP development) | [`with_secure`](CookiePolicy::with_secure) |
/// | `Path` | `/` | [`with_path`](CookiePolicy::with_path) |
/// | `Domain` | none (host-only cookie) | [`with_domain`](CookiePolicy::with_domain) |
/// | `__Host-` prefix | off | [`with_host_prefix`](CookiePolicy::with_host_prefix) |
/// | lifetime | session cookie (gone when the browser closes) | [`with_max_age`](CookiePolicy::with_max_age) |
///
/// The `__Host-` prefix forces `Secure`, `Path=/` and no `Domain`, whatever
/// the other settings say, because browsers reject the cookie otherwise.
///
/// With a `Max-Age`, the cookie is sent again whenever the store refreshed
/// the session's idle clock (by a touch or along with a write, at most once
/// per [`Config::touch_after`](crate::Config::touch_after)), so an active visitor's
/// cookie does not run out while their session lives.
///
/// The removal cookie (on logout, or when a presented cookie named no live
/// session) carries the same name, path, domain and flags, an empty value,
/// `Max-Age=0` and an `Expires` in 1970, so the browser drops exactly the
/// cookie that was set.
///
/// ```
/// use std::time::Duration;
/// use stored_session::adapters::{CookiePolicy, SameSite};
///
/// let policy = CookiePolicy::new()
///     .with_name("sid")
///     .with_same_site(SameSite::Strict)
///     .with_host_prefix(true)
///     .with_max_age(Some(Duration::from_secs(14 * 24 * 60 * 60)));
/// policy.validate()?;
/// assert_eq!(policy.name(), "__Host-sid");
/// assert!(policy.is_secure());
///
/// let removal = policy.removal_cookie().header_value();
/// assert!(removal.starts_with("__Host-sid=;"));
/// assert!(removal.contains("Max-Age=0"));
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookiePolicy {
    name: String,
    http_only: bool,
    same_site: SameSite,
    secure: bool,
    path: String,
    domain: Option<String>,
    host_prefix: bool,
    max_age: Option<Duration>,
}

impl Default for CookiePolicy {
    fn default() -> Self {
        CookiePolicy {
            name: "id".to_owned(),
            http_only: true,
            same_site: SameSite::Lax,
            secure: true,
            path: "/".to_owned(),
            domain: None,
            host_prefix: false,
            max_age: None,
        }
    }
}

impl CookiePolicy {
    /// The default policy (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the cookie name (without any `__Host-` prefix; see
    /// [`with_host_prefix`](CookiePolicy::with_host_prefix)). It must be an HTTP token:
    /// checked by [`validate`](CookiePolicy::validate).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether scripts are kept from reading the cookie (`HttpOnly`). Default: on.
    pub fn with_http_only(mut self, on: bool) -> Self {
        self.http_only = on;
        self
    }

    /// The `SameSite` attribute. Default: `Lax`. `None` requires `Secure`.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Whether the cookie is sent over HTTPS only (`Secure`). Default: on.
    /// Turn it off only for development over plain HTTP: browsers other than
    /// on `localhost` would refuse to send a `Secure` cookie over HTTP.
    pub fn with_secure(mut self, on: bool) -> Self {
        self.secure = on;
        self
    }

    /// The `Path` attribute. Default: `/`. Must start with `/`.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The `Domain` attribute, which shares the cookie with subdomains.
    /// Default: none, a host-only cookie (safer).
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Whether the cookie name gets the `__Host-` prefix, which makes
    /// browsers refuse the cookie unless it is `Secure`, `Path=/` and has no
    /// `Domain`: a sibling subdomain cannot plant or overwrite it. Turning it
    /// on forces those three attributes. Default: off.
    pub fn with_host_prefix(mut self, on: bool) -> Self {
        self.host_prefix = on;
        self
    }

    /// `None` (the default): a session cookie, dropped when the browser
    /// closes. `Some(age)`: a persistent cookie with `Max-Age`, refreshed
    /// whenever the store refreshes the session's idle clock. Pick an age no
    /// longer than the store's idle timeout. This is the lifetime of
    /// sessions that keep [`Expiry::Default`](crate::Expiry::Default); a
    /// session that chose its own expiry gets the cookie lifetime that
    /// follows from it (see [`CookieLifetime`]).
    pub fn with_max_age(mut self, age: Option<Duration>) -> Self {
        self.max_age = age;
        self
    }

    /// The full cookie name, prefix included.
    pub fn name(&self) -> Cow<'_, str> {
        if self.host_prefix {
            Cow::Owned(format!("{HOST_PREFIX}{}", self.name))
        } else {
            Cow::Borrowed(&self.name)
        }
    }

    /// Whether the cookie is written with `Secure` (always with `__Host-`).
    pub fn is_secure(&self) -> bool {
        self.secure || self.host_prefix
    }

    /// Whether the cookie is written with `HttpOnly`.
    pub fn is_http_only(&self) -> bool {
        self.http_only
    }

    /// The `SameSite` attribute written.
    pub fn same_site(&self) -> SameSite {
        self.same_site
    }

    /// The `Path` written (always `/` with `__Host-`).
    pub fn path(&self) -> &str {
        if self.host_prefix {
            "/"
        } else {
            &self.path
        }
    }

    /// The `Domain` written, if any (never with `__Host-`).
    pub fn domain(&self) -> Option<&str> {
        if self.host_prefix {
            None
        } else {
            self.domain.as_deref()
        }
    }

    /// The configured `Max-Age`, if the cookie is persistent.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// Checks that the policy produces a cookie browsers accept.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the name is empty or not an HTTP token, the path
    /// does not start with `/` or holds `;` or control characters, the domain
    /// holds such characters, or `SameSite=None` is asked for without `Secure`.
    ///
    /// ```
    /// use stored_session::adapters::{CookiePolicy, SameSite};
    ///
    /// assert!(CookiePolicy::new().validate().is_ok());
    /// assert!(CookiePolicy::new().with_name("a b").validate().is_err());
    /// assert!(CookiePolicy::new().with_path("no-slash").validate().is_err());
    /// assert!(CookiePolicy::new().with_secure(false).with_same_site(SameSite::None).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() || !self.name.bytes().all(is_token_byte) {
            return Err(Error::Config(format!(
                "cookie name {:?} is not an HTTP token",
                self.name
            )));
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(is_attribute_byte) {
            return Err(Error::Config(format!(
                "cookie path {:?} must start with '/' and hold no ';' or control characters",
                self.path
            )));
        }
        if let Some(domain) = &self.domain {
            if domain.is_empty() || !domain.bytes().all(|b| is_attribute_byte(b) && b != b' ') {
                return Err(Error::Config(format!(
                    "cookie domain {domain:?} is empty or holds ';', spaces or control characters"
                )));
            }
        }
        if self.same_site == SameSite::None && !self.is_secure() {
            return Err(Error::Config(
                "SameSite=None requires Secure: browsers reject the cookie otherwise".into(),
            ));
        }
        Ok(())
    }

    /// The `Set-Cookie` that hands `id` to the browser, with the lifetime
    /// the store gave it ([`CookieAction::Set`](crate::CookieAction::Set),
    /// [`CookieAction::Refresh`](crate::CookieAction::Refresh)):
    /// [`CookieLifetime::PolicyDefault`] writes this policy's
    /// [`max_age`](CookiePolicy::max_age), [`CookieLifetime::Session`] no
    /// `Max-Age`, [`CookieLifetime::MaxAge`] that one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::adapters::CookiePolicy;
    /// use stored_session::{CookieLifetime, SessionId};
    ///
    /// let id = SessionId::generate();
    /// let policy = CookiePolicy::new();
    /// let plain = policy.session_cookie(&id, CookieLifetime::PolicyDefault).header_value();
    /// assert!(!plain.contains("Max-Age") && !plain.contains("Expires"));
    /// let month = CookieLifetime::MaxAge(Duration::from_secs(30 * 24 * 3600));
    /// assert!(policy.session_cookie(&id, month).header_value().contains("Max-Age=2592000"));
    /// ```
    pub fn session_cookie(&self, id: &SessionId, lifetime: CookieLifetime) -> SetCookie {
        let mut cookie = self.base(id.as_cookie_value().to_owned());
        if let Some(age) = lifetime.max_age(self.max_age) {
            let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
            cookie.set_max_age(CookieDuration::seconds(secs));
        }
        SetCookie {
            cookie,
            removal: false,
        }
    }

    /// The `Set-Cookie` that removes the session cookie: same name, path,
    /// domain and flags, empty value, `Max-Age=0`, `Expires` in 1970.
    pub fn removal_cookie(&self) -> SetCookie {
        let mut cookie = self.base(String::new());
        cookie.set_max_age(CookieDuration::ZERO);
        cookie.set_expires(OffsetDateTime::UNIX_EPOCH);
        SetCookie {
            cookie,
            removal: true,
        }
    }

    fn base(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.name().into_owned(), value);
        cookie.set_http_only(self.http_only);
        cookie.set_secure(self.is_secure());
        cookie.set_same_site(self.same_site);
        cookie.set_path(self.path().to_owned());
        if let Some(domain) = self.domain() {
            cookie.set_domain(domain.to_owned());
        }
        cookie
    }

    /// Finds the session cookie in a request's `Cookie` header values (any
    /// number of headers, each `a=b; c=d`).
    ///
    /// The name is matched byte for byte against
    /// [`cookie_name`](CookiePolicy::cookie_name) on the raw header: nothing is
    /// percent-decoded, case-folded, unquoted or trimmed inside a pair, so
    /// `%69%64`, `_%5FHost-id`, `ID`, `"id"` or `id ` never stand for `id`
    /// (a name a browser would keep apart from the real cookie must never be
    /// read as it: see [`cookie_pairs`]). Value bytes that are not UTF-8 are
    /// replaced, never trusted.
    pub(crate) fn find<I, H>(&self, cookie_headers: I) -> Presented
    where
        I: IntoIterator<Item = H>,
        H: AsRef<[u8]>,
    {
        let name = self.name();
        let name = name.as_bytes();
        let mut found = Presented::Absent;
        for header in cookie_headers {
            for (pair_name, value) in cookie_pairs(header.as_ref()) {
                if pair_name != name {
                    continue;
                }
                let value = String::from_utf8_lossy(value);
                found = match found {
                    Presented::Absent => Presented::One(value.into_owned()),
                    Presented::One(v) if v == value => Presented::One(v),
                    _ => Presented::Conflicting,
                };
            }
        }
        found
    }
}

/// RFC 9110 `tchar`: what a cookie name may hold.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What a `Path` or `Domain` attribute value may hold.
fn is_attribute_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b';'
}

/// What a request presented as its session cookie.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Presented {
    /// No cookie of that name.
    Absent,
    /// One value (repeats of the same value count once).
    One(String),
    /// Several different values: ambiguous, so none is trusted.
    Conflicting,
}

impl Presented {
    /// The value to hand to [`SessionStore::load`](crate::SessionStore::load).
    /// Conflicting values load as a malformed one: a fresh session, no query,
    /// and a removal cookie at commit.
    pub(crate) fn as_load_arg(&self) -> Option<&str> {
        match self {
            Presented::Absent => None,
            Presented::One(v) => Some(v),
            Presented::Conflicting => Some(""),
        }
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Presented::Absent => "Absent",
            Presented::One(_) => "One(<redacted>)",
            Presented::Conflicting => "Conflicting",
        })
    }
}

/// A `Set-Cookie` header the response must carry: the session cookie (its
/// value is the session id, a secret) or its removal.
///
/// `Debug` redacts the value; [`header_value`](SetCookie::header_value) is the
/// only way to the text, for the response header.
///
/// ```
/// use stored_session::adapters::CookiePolicy;
/// use stored_session::{CookieLifetime, SessionId};
///
/// let set = CookiePolicy::new().session_cookie(&SessionId::generate(), CookieLifetime::PolicyDefault);
/// assert!(!set.is_removal());
/// assert!(set.header_value().ends_with("; HttpOnly; SameSite=Lax; Secure; Path=/"));
/// assert!(!format!("{set:?}").contains(&set.header_value()[3..46]));
/// ```
#[derive(Clone, PartialEq)]
pub struct SetCookie {
    cookie: Cookie<'static>,
    removal: bool,
}

impl SetCookie {
    /// The text of the `Set-Cookie` header. It holds the session id: write it
    /// to the response and nowhere else.
    pub fn header_value(&self) -> String {
        self.cookie.to_string()
    }

    /// Whether this removes the cookie (logout, or a cookie naming no live
    /// session) rather than setting it.
    pub fn is_removal(&self) -> bool {
        self.removal
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        self.cookie.name()
    }

    /// The cookie, for frameworks that take a `cookie::Cookie`.
    pub fn as_cookie(&self) -> &Cookie<'static> {
        &self.cookie
    }

    /// Takes the cookie out.
    pub fn into_cookie(self) -> Cookie<'static> {
        self.cookie
    }
}

impl fmt::Debug for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetCookie")
            .field("name", &self.cookie.name())
            .field("value", &"<redacted>")
            .field("removal", &self.removal)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(p: &Presented) -> Option<&str> {
        match p {
            Presented::One(v) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn finds_the_cookie_among_others_and_across_headers() {
        let policy = CookiePolicy::new();
        let p = policy.find(["a=1; id=abc; b=2"]);
        assert_eq!(value_of(&p), Some("abc"));
        let p = policy.find(["a=1", "id=xyz"]);
        assert_eq!(value_of(&p), Some("xyz"));
        // Names are exact and case-sensitive.
        assert_eq!(policy.find(["ID=abc; idx=1; xid=2"]), Presented::Absent);
        assert_eq!(policy.find(Vec::<&str>::new()), Presented::Absent);
        assert_eq!(policy.find([""]), Presented::Absent);
        assert_eq!(policy.find([";;; ; =;="]), Presented::Absent);
    }

    #[test]
    fn duplicates_agree_or_conflict() {
        let policy = CookiePolicy::new();
        assert_eq!(value_of(&policy.find(["id=a; id=a", "id=a"])), Some("a"));
        assert_eq!(policy.find(["id=a; id=b"]), Presented::Conflicting);
        assert_eq!(policy.find(["id=a", "id=b"]), Presented::Conflicting);
        assert_eq!(Presented::Conflicting.as_load_arg(), Some(""));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let policy = CookiePolicy::new();
        let huge = format!("id={}", "A".repeat(1 << 20));
        assert_eq!(
            value_of(&policy.find([huge.as_bytes()])).map(str::len),
            Some(1 << 20)
        );
        let p = policy.find([&b"x=\xff\xfe; id=\xc3\x28abc"[..]]);
        assert!(value_of(&p).is_some_and(|v| v.contains('\u{fffd}')));
        let p = policy.find([&b"id=ab\0cd"[..]]);
        assert!(matches!(p, Presented::One(_) | Presented::Absent));
    }

    #[test]
    fn names_are_matched_byte_for_byte() {
        for policy in [
            CookiePolicy::new(),
            CookiePolicy::new().with_host_prefix(true),
        ] {
            let name = policy.name().into_owned();
            let encoded: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
            let mut near = vec![
                encoded.clone(),
                encoded.to_ascii_lowercase(),
                format!("%{:02x}{}", name.as_bytes()[0], &name[1..]),
                format!(
                    "{}%{:02X}",
                    &name[..name.len() - 1],
                    name.as_bytes()[name.len() - 1]
                ),
                name.to_ascii_uppercase(),
                format!("\"{name}\""),
                format!("'{name}'"),
                format!("{name} "),
                format!("{} {}", &name[..1], &name[1..]),
                format!("\u{a0}{name}"),
                format!("{name}\u{a0}"),
                format!("\u{b}{name}"),
                format!("\u{c}{name}"),
                format!("{name}\0"),
                format!("{name}%20"),
            ];
            if policy.name() == "__Host-id" {
                near.extend(
                    [
                        "%5F%5FHost-id",
                        "_%5FHost-id",
                        "%5f_Host-id",
                        "__Host-%69d",
                        "__host-id",
                        "__HOST-id",
                        "__Host-ID",
                        "id",
                        "__Host-i%64",
                    ]
                    .map(String::from),
                );
            } else {
                near.extend(
                    ["%69%64", "%69d", "i%64", "ID", "Id", "iD", "__Host-id"].map(String::from),
                );
            }
            for other in near {
                for header in [format!("{other}=v"), format!("a=1; {other}=v; b=2")] {
                    assert_eq!(
                        policy.find([header.as_bytes()]),
                        Presented::Absent,
                        "{header:?}"
                    );
                }
            }
            // The separator's spaces and tabs are not part of the name.
            let header = format!("a=1;\t {name}=v \t;b=2");
            assert_eq!(value_of(&policy.find([header])), Some("v"));
            // Values are taken as sent: quotes and percent-escapes stay.
            let header = format!("{name}=\"%41\"");
            assert_eq!(value_of(&policy.find([header])), Some("\"%41\""));
        }
    }

    #[test]
    fn host_prefix_forces_secure_root_path_and_no_domain() {
        let policy = CookiePolicy::new()
            .with_secure(false)
            .with_path("/app")
            .with_domain("example.com")
            .with_host_prefix(true);
        policy.validate().unwrap();
        let set = policy
            .session_cookie(&SessionId::generate(), CookieLifetime::PolicyDefault)
            .header_value();
        assert!(set.starts_with("__Host-id="));
        assert!(set.contains("; Secure"));
        assert!(set.contains("; Path=/"));
        assert!(!set.contains("Path=/app"));
        assert!(!set.contains("Domain"));
        assert_eq!(
            policy.find(["id=x; __Host-id=y"]),
            Presented::One("y".into())
        );
    }

    #[test]
    fn removal_matches_name_path_and_domain() {
        let policy = CookiePolicy::new()
            .with_name("sess")
            .with_path("/app")
            .with_domain("example.com");
        let set = policy.session_cookie(&SessionId::generate(), CookieLifetime::PolicyDefault);
        let del = policy.removal_cookie();
        assert!(del.is_removal() && !set.is_removal());
        let (s, d) = (set.as_cookie(), del.as_cookie());
        assert_eq!(
            (s.name(), s.path(), s.domain()),
            (d.name(), d.path(), d.domain())
        );
        assert_eq!(d.value(), "");
        assert_eq!(d.max_age(), Some(CookieDuration::ZERO));
        let text = del.header_value();
        assert!(
            text.contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            "{text}"
        );
        assert!(text.contains("Domain=example.com"), "{text}");
    }

    #[test]
    fn max_age_is_written_when_asked() {
        let id = SessionId::generate();
        let default = CookieLifetime::PolicyDefault;
        let plain = CookiePolicy::new()
            .session_cookie(&id, default)
            .header_value();
        assert!(!plain.contains("Max-Age") && !plain.contains("Expires"));
        let hour = CookiePolicy::new().with_max_age(Some(Duration::from_secs(3600)));
        let persistent = hour.session_cookie(&id, default).header_value();
        assert!(persistent.contains("Max-Age=3600"), "{persistent}");
        // The session's own lifetime wins over the policy's.
        let browser = hour
            .session_cookie(&id, CookieLifetime::Session)
            .header_value();
        assert!(!browser.contains("Max-Age") && !browser.contains("Expires"));
        let month = CookieLifetime::MaxAge(Duration::from_secs(30 * 86_400));
        let remembered = CookiePolicy::new()
            .session_cookie(&id, month)
            .header_value();
        assert!(remembered.contains("Max-Age=2592000"), "{remembered}");
        assert!(!remembered.contains("Expires"), "{remembered}");
    }

    #[test]
    fn validation() {
        for bad in [
            CookiePolicy::new().with_name(""),
            CookiePolicy::new().with_name("a;b"),
            CookiePolicy::new().with_name("a=b"),
            CookiePolicy::new().with_name("é"),
            CookiePolicy::new().with_path(""),
            CookiePolicy::new().with_path("/a;b"),
            CookiePolicy::new().with_path("/a\nb"),
            CookiePolicy::new().with_domain(""),
            CookiePolicy::new().with_domain("a b"),
            CookiePolicy::new()
                .with_secure(false)
                .with_same_site(SameSite::None),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        CookiePolicy::new()
            .with_same_site(SameSite::None)
            .validate()
            .unwrap();
        CookiePolicy::new()
            .with_secure(false)
            .with_same_site(SameSite::None)
            .with_host_prefix(true)
            .validate()
            .unwrap();
    }
}
