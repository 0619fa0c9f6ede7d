//! Helpers for applications' own integration tests (feature `testing`).
//!
//! [`TestStore`] is a real store (no mock) on a private in-memory SQLite
//! database, with fixed keys and a [`ManualClock`]. It creates sessions with
//! given data and hands back their cookie, reads the session behind a cookie,
//! and asserts what a response did with the session cookie.
//!
//! ```
//! use std::time::Duration;
//! use stored_session::testing::TestStore;
//!
//! let test = TestStore::new();
//! let cookie = test.create_session(|s| s.insert("user", "alice"));
//! assert_eq!(test.session(&cookie).unwrap().get::<String>("user")?.as_deref(), Some("alice"));
//!
//! // 31 days later the session has expired (default idle timeout: 30 days).
//! test.advance(Duration::from_secs(31 * 24 * 60 * 60));
//! assert!(test.session(&cookie).is_none());
//! # Ok::<(), stored_session::Error>(())
//! ```
#![cfg_attr(
    feature = "rouille",
    doc = r#"
## With rouille

Give the app the test store's [`Sessions`], then call its handler with
`rouille::Request::fake_http`:

```
use rouille::{Request, Response};
use stored_session::adapters::{rouille::with_session, Sessions};
use stored_session::testing::TestStore;

// The application under test.
fn app(sessions: &Sessions, request: &Request) -> Response {
    with_session(sessions, request, |session| {
        if request.url() == "/login" {
            session.renew();
            session.insert("user", "alice")?;
        }
        let user = session.get::<String>("user")?.unwrap_or_else(|| "anonymous".into());
        Ok(Response::text(user))
    })
}

let test = TestStore::new();

// Logging in sets a new session cookie, and the session holds the user.
let response = app(test.sessions(), &Request::fake_http("POST", "/login", vec![], vec![]));
let cookie = test.assert_cookie_set(&response);
assert_eq!(test.session(&cookie).unwrap().get::<String>("user")?.as_deref(), Some("alice"));

// A session made by the test is seen by the app; reading it sets no cookie.
let cookie = test.create_session(|s| s.insert("user", "bob"));
let request = Request::fake_http("GET", "/", vec![("Cookie".into(), cookie.header())], vec![]);
let response = app(test.sessions(), &request);
test.assert_cookie_unchanged(&response);

// A cookie naming no live session is removed.
let request = Request::fake_http("GET", "/", vec![("Cookie".into(), test.unknown_cookie().header())], vec![]);
test.assert_cookie_removed(&app(test.sessions(), &request));
# Ok::<(), stored_session::Error>(())
```
"#
)]
#![cfg_attr(
    feature = "rocket",
    doc = r#"
## With Rocket's local client

Attach a [`SessionFairing`](crate::adapters::rocket::SessionFairing) on the
test store's [`Sessions`] and drive the app with
`rocket::local::blocking::Client`:

```
use rocket::http::Header;
use rocket::local::blocking::Client;
use rocket::{get, post, routes};
use stored_session::adapters::rocket::{SessionFairing, SessionGuard};
use stored_session::testing::TestStore;

#[get("/")]
fn whoami(session: SessionGuard<'_>) -> String {
    session.get::<String>("user").ok().flatten().unwrap_or_else(|| "anonymous".into())
}

#[post("/logout")]
fn logout(session: SessionGuard<'_>) -> &'static str {
    session.destroy();
    "logged out"
}

let test = TestStore::new();
let rocket = rocket::build()
    .attach(SessionFairing::new(test.sessions().clone()))
    .mount("/", routes![whoami, logout]);
let client = Client::untracked(rocket).expect("valid rocket");

let cookie = test.create_session(|s| s.insert("user", "alice"));
let response = client.get("/").header(Header::new("Cookie", cookie.header())).dispatch();
test.assert_cookie_unchanged(&response);
assert_eq!(response.into_string().as_deref(), Some("alice"));

let response = client.post("/logout").header(Header::new("Cookie", cookie.header())).dispatch();
test.assert_cookie_removed(&response);
assert!(test.session(&cookie).is_none());
```
"#
)]

use std::fmt;
use std::time::Duration;

use ::cookie::Cookie;

use crate::adapters::{CookiePolicy, Sessions};
use crate::{Config, Key, Keyring, ManualClock, Result, Session, SessionId, SessionStore};

/// The fixed test key's 32 bytes. Public on purpose: never use it outside tests.
const TEST_KEY_BYTES: [u8; 32] = *b"stored-session test key, public!";

/// The time a [`TestStore`]'s clock starts at: 2030-01-01T00:00:00Z.
pub const TEST_START: i64 = 1_893_456_000;

/// The fixed keyring every [`TestStore`] uses. Its key is public (it is in
/// this crate's source): for tests only.
///
/// ```
/// let a = stored_session::testing::test_keyring();
/// let b = stored_session::testing::test_keyring();
/// assert_eq!(a.current().id(), b.current().id());
/// ```
pub fn test_keyring() -> Keyring {
    match Key::from_bytes(&TEST_KEY_BYTES) {
        Ok(key) => Keyring::new(key),
        // 32 bytes is the key length; unreachable, but no panic either.
        Err(_) => Keyring::generate(),
    }
}

/// A real session store for tests: a private in-memory SQLite database,
/// [fixed keys](test_keyring), a [`ManualClock`] starting at [`TEST_START`],
/// and a [`CookiePolicy`] (the default one unless given).
///
/// Every `TestStore` has its own database, so tests run in parallel. Clone
/// [`sessions`](TestStore::sessions) into the application under test.
pub struct TestStore {
    sessions: Sessions,
    clock: ManualClock,
}

impl Default for TestStore {
    fn default() -> Self {
        Self::new()
    }
}

impl TestStore {
    /// A test store with the default cookie policy and store configuration.
    ///
    /// # Panics
    ///
    /// If the in-memory database cannot be created (a broken build).
    pub fn new() -> Self {
        Self::custom(CookiePolicy::new(), |builder| builder)
    }

    /// A test store serving `policy`.
    ///
    /// # Panics
    ///
    /// If `policy` is invalid (see [`CookiePolicy::validate`]).
    pub fn with_policy(policy: CookiePolicy) -> Self {
        Self::custom(policy, |builder| builder)
    }

    /// A test store serving `policy`, its store's policy made by
    /// `configure` (idle timeout, lifetime, …) from a [`Config`] that
    /// already holds the manual clock; a clock it sets replaces that one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::adapters::CookiePolicy;
    /// use stored_session::testing::TestStore;
    ///
    /// let test = TestStore::custom(CookiePolicy::new().with_name("sid"), |c| {
    ///     c.idle_timeout(Some(Duration::from_secs(60)))
    /// });
    /// let cookie = test.create_session(|s| s.insert("k", &1));
    /// assert_eq!(cookie.name(), "sid");
    /// test.advance(Duration::from_secs(61));
    /// assert!(test.session(&cookie).is_none());
    /// ```
    ///
    /// # Panics
    ///
    /// If `policy` is invalid or the database cannot be created.
    pub fn custom(policy: CookiePolicy, configure: impl FnOnce(Config) -> Config) -> Self {
        let clock =
            ManualClock::new(chrono::DateTime::from_timestamp(TEST_START, 0).unwrap_or_default());
        let config = configure(Config::default().clock(clock.clock()));
        let store = SessionStore::builder(test_keyring())
            .config(config)
            .open_migrated("sqlite::memory:")
            .unwrap_or_else(|e| panic!("could not create the in-memory test store: {e}"));
        let sessions = Sessions::with_policy(store, policy)
            .unwrap_or_else(|e| panic!("invalid cookie policy for the test store: {e}"));
        TestStore { sessions, clock }
    }

    /// The store and its cookie policy, to hand to the application.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The store.
    pub fn store(&self) -> &SessionStore {
        self.sessions.store()
    }

    /// The cookie policy.
    pub fn policy(&self) -> &CookiePolicy {
        self.sessions.policy()
    }

    /// The store's clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Moves the store's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Creates and stores a session filled by `fill`, and returns the cookie
    /// a browser would send for it.
    ///
    /// # Panics
    ///
    /// If `fill` fails, leaves the session empty (nothing would be stored),
    /// or the store fails.
    pub fn create_session(&self, fill: impl FnOnce(&mut Session) -> Result<()>) -> TestCookie {
        let store = self.store();
        let mut session = store
            .load(None)
            .unwrap_or_else(|e| panic!("loading a new session failed: {e}"));
        fill(&mut session).unwrap_or_else(|e| panic!("filling the test session failed: {e}"));
        match store.save(&mut session) {
            Ok(crate::CookieAction::Set(id, _)) => self.cookie_for(&id),
            Ok(other) => panic!("the test session was not stored (is it empty?): {other:?}"),
            Err(e) => panic!("storing the test session failed: {e}"),
        }
    }

    /// The cookie for a well-formed id that names no session: what a browser
    /// sends after its session was deleted or expired.
    pub fn unknown_cookie(&self) -> TestCookie {
        self.cookie_for(&SessionId::generate())
    }

    fn cookie_for(&self, id: &SessionId) -> TestCookie {
        TestCookie {
            name: self.policy().name().into_owned(),
            value: id.as_cookie_value().to_owned(),
        }
    }

    /// The live session behind `cookie`, or `None` when the cookie names no
    /// live session (never stored, deleted, expired, undecryptable).
    ///
    /// Loading does not change the session (no write, no touch).
    ///
    /// # Panics
    ///
    /// If the store fails.
    pub fn session(&self, cookie: &TestCookie) -> Option<Session> {
        let session = self
            .store()
            .load(Some(&cookie.value))
            .unwrap_or_else(|e| panic!("loading the session failed: {e}"));
        (!session.is_new()).then_some(session)
    }

    /// Asserts that `response` sets the session cookie (a new or renewed
    /// session) with this store's policy, and returns it.
    ///
    /// # Panics
    ///
    /// When it does not: no such `Set-Cookie`, several, a removal, or
    /// attributes that differ from the policy.
    pub fn assert_cookie_set(&self, response: &(impl ResponseCookies + ?Sized)) -> TestCookie {
        let cookie = self.one_session_cookie(response, "set the session cookie");
        assert!(
            !is_removal(&cookie),
            "expected the response to set the session cookie, but it removes it"
        );
        assert!(
            SessionId::parse(cookie.value()).is_some(),
            "the session cookie's value is not a session id"
        );
        TestCookie {
            name: cookie.name().to_owned(),
            value: cookie.value().to_owned(),
        }
    }

    /// Asserts that `response` removes the session cookie (logout, or a
    /// cookie that named no live session), matching name, path and domain.
    ///
    /// # Panics
    ///
    /// When it does not.
    pub fn assert_cookie_removed(&self, response: &(impl ResponseCookies + ?Sized)) {
        let cookie = self.one_session_cookie(response, "remove the session cookie");
        assert!(
            is_removal(&cookie),
            "expected the response to remove the session cookie, but it sets a new one"
        );
    }

    /// Asserts that `response` leaves the session cookie alone (no
    /// `Set-Cookie` for it).
    ///
    /// # Panics
    ///
    /// When it sets or removes it.
    pub fn assert_cookie_unchanged(&self, response: &(impl ResponseCookies + ?Sized)) {
        let n = self.session_cookies(response).len();
        assert_eq!(
            n, 0,
            "expected no Set-Cookie for the session cookie, found {n}"
        );
    }

    fn session_cookies(&self, response: &(impl ResponseCookies + ?Sized)) -> Vec<Cookie<'static>> {
        let name = self.policy().name();
        response
            .set_cookie_headers()
            .into_iter()
            .filter_map(|h| Cookie::parse(h).ok())
            .filter(|c| c.name() == name)
            .collect()
    }

    fn one_session_cookie(
        &self,
        response: &(impl ResponseCookies + ?Sized),
        expected: &str,
    ) -> Cookie<'static> {
        let mut found = self.session_cookies(response);
        assert_eq!(
            found.len(),
            1,
            "expected the response to {expected}: found {} Set-Cookie headers for {:?}",
            found.len(),
            self.policy().name()
        );
        let cookie = found.remove(0);
        let policy = self.policy();
        assert_eq!(cookie.path(), Some(policy.path()), "cookie path");
        assert_eq!(cookie.domain(), policy.domain(), "cookie domain");
        assert_eq!(
            cookie.secure().unwrap_or(false),
            policy.is_secure(),
            "Secure flag"
        );
        assert_eq!(
            cookie.http_only().unwrap_or(false),
            policy.is_http_only(),
            "HttpOnly flag"
        );
        assert_eq!(cookie.same_site(), Some(policy.same_site()), "SameSite");
        cookie
    }
}

fn is_removal(cookie: &Cookie<'_>) -> bool {
    cookie.value().is_empty()
        && cookie
            .max_age()
            .is_some_and(|age| age <= ::cookie::time::Duration::ZERO)
}

impl fmt::Debug for TestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestStore")
            .field("sessions", &self.sessions)
            .field("clock", &self.clock)
            .finish()
    }
}

/// A session cookie as the browser sends it back.
#[derive(Clone, PartialEq, Eq)]
pub struct TestCookie {
    name: String,
    value: String,
}

impl TestCookie {
    /// The cookie's name (with any `__Host-` prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cookie's value: the session id.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// `name=value`, the value of a `Cookie` request header.
    pub fn header(&self) -> String {
        format!("{}={}", self.name, self.value)
    }
}

impl fmt::Debug for TestCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCookie")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// A response whose `Set-Cookie` headers the assertions read: implemented for
/// the adapters' response types and for plain lists of header values.
pub trait ResponseCookies {
    /// Every `Set-Cookie` header value, in order.
    fn set_cookie_headers(&self) -> Vec<String>;
}

impl ResponseCookies for [String] {
    fn set_cookie_headers(&self) -> Vec<String> {
        self.to_vec()
    }
}

impl ResponseCookies for [&str] {
    fn set_cookie_headers(&self) -> Vec<String> {
        self.iter().map(|s| s.to_string()).collect()
    }
}

impl ResponseCookies for Vec<String> {
    fn set_cookie_headers(&self) -> Vec<String> {
        self.clone()
    }
}

#[cfg(feature = "rouille")]
impl ResponseCookies for ::rouille::Response {
    fn set_cookie_headers(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, value)| value.to_string())
            .collect()
    }
}

#[cfg(feature = "http")]
impl<B> ResponseCookies for ::http::Response<B> {
    fn set_cookie_headers(&self) -> Vec<String> {
        self.headers()
            .get_all(::http::header::SET_COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

#[cfg(feature = "rocket")]
impl ResponseCookies for ::rocket::local::blocking::LocalResponse<'_> {
    fn set_cookie_headers(&self) -> Vec<String> {
        self.headers()
            .get("Set-Cookie")
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(feature = "rocket")]
impl ResponseCookies for ::rocket::local::asynchronous::LocalResponse<'_> {
    fn set_cookie_headers(&self) -> Vec<String> {
        self.headers()
            .get("Set-Cookie")
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertions_accept_what_the_policy_writes_and_reject_the_rest() {
        let test = TestStore::new();
        let cookie = test.create_session(|s| s.insert("k", &1));
        let id = SessionId::parse(cookie.value()).unwrap();
        let set = vec![test
            .policy()
            .session_cookie(&id, crate::CookieLifetime::PolicyDefault)
            .header_value()];
        assert_eq!(test.assert_cookie_set(&set), cookie);
        let removal = vec![test.policy().removal_cookie().header_value()];
        test.assert_cookie_removed(&removal);
        test.assert_cookie_unchanged(&["other=1; Path=/"][..]);

        let caught =
            |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
        assert!(caught(&|| test.assert_cookie_unchanged(&set)));
        assert!(caught(&|| test.assert_cookie_removed(&set)));
        assert!(caught(&|| {
            test.assert_cookie_set(&removal);
        }));
        let wrong_path = vec![CookiePolicy::new()
            .with_path("/x")
            .session_cookie(&id, crate::CookieLifetime::PolicyDefault)
            .header_value()];
        assert!(caught(&|| {
            test.assert_cookie_set(&wrong_path);
        }));
        assert!(!format!("{cookie:?}").contains(cookie.value()));
    }

    #[test]
    fn keys_are_fixed_so_a_second_store_reads_the_same_envelopes() {
        let a = test_keyring();
        assert_eq!(a.current().id(), test_keyring().current().id());
        assert_eq!(a.len(), 1);
    }
}
