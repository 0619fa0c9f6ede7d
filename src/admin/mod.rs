//! Admin page (feature `admin`): server-rendered HTML for operators.
//!
//! One page, no JavaScript, no template engine, no assets to serve:
//!
//! * statistics ([`SessionStore::stats`]) with an inline SVG chart of the
//!   sessions created and active in each of the last 24 hours;
//! * lookup by user id, listing the user's live sessions
//!   ([`SessionStore::sessions_of`]: created, last active, IP address, user
//!   agent, the application's fields) with a revoke button on each;
//! * "revoke all of this user" and "revoke everything", each behind a
//!   confirmation checkbox.
//!
//! [`Admin`] is the framework-neutral core: an [`AdminRequest`] in, an
//! [`AdminResponse`] out. Thin glue serves it from rouille
//! ([`admin::rouille::handle`](crate::admin::rouille::handle), with the
//! `rouille` feature) and from `http` types
//! ([`admin::http::handle`](crate::admin::http::handle), with the `http`
//! feature).
//!
//! # Authorization is yours
//!
//! The page does not know who may use it. Mount it behind your own
//! authorization check (an admin role in your session, a bearer token, a
//! VPN-only listener…) and hand it only the requests that passed.
//!
//! # Routes
//!
//! Relative to the mount path ([`Admin::with_mount_path`], `/admin` by default):
//!
//! | method | path | what |
//! |---|---|---|
//! | `GET` | `/` (and the bare mount path) | the page; `?user=ID` adds the user's sessions, 50 per page, newest first (`&after=CURSOR` for the next page) |
//! | `POST` | `/revoke` | form `csrf`, `user`, `handle`: ends one session |
//! | `POST` | `/revoke-user` | form `csrf`, `user`, `confirm=yes`: ends all of the user's sessions |
//! | `POST` | `/revoke-all` | form `csrf`, `confirm=yes`: ends every session |
//!
//! A POST answers `303 See Other` back to the page, which shows what was
//! done. State changes only by POST: the same paths answer `405` to a GET.
//!
//! # CSRF protection
//!
//! A signed, expiring double-submit token bound to the admin's login:
//!
//! * The page sets a random nonce cookie: over HTTPS (the default,
//!   [`Admin::with_secure_cookie`]) it is `__Host-stored_session_admin`, with
//!   `Secure`, `Path=/` and no `Domain`, so neither a sibling subdomain nor
//!   a plain-HTTP response can plant or overwrite it; on a plain-HTTP page
//!   (a local demo) it is `stored_session_admin`, scoped to the mount path.
//!   It is always HttpOnly and `SameSite=Strict`, and only the configured
//!   name is read, matched exactly on the raw `Cookie` header.
//! * Every form carries a token: the time it was issued and an
//!   HMAC-SHA256, under a key derived from the store's current key, over
//!   that time, the nonce and a hash of the **admin login**. The login is
//!   the value of the cookie named by [`Admin::with_login_cookie`] (your admin
//!   sign-in cookie), or what your code passes to [`AdminRequest::login`].
//!   A token minted for one login fails under another (a new sign-in
//!   invalidates the forms of the previous one), and it expires
//!   [`Admin::with_csrf_ttl`] after it was issued (one hour by default; a token
//!   issued more than a minute in the future is refused too).
//!
//! A POST is refused with `403 Forbidden`, and changes nothing, when the
//! field is missing, malformed, expired, minted for another nonce or
//! login, or when the browser says the request came from another site
//! (`Sec-Fetch-Site: cross-site` or `same-site`). Every process with the
//! same keys accepts the same tokens; after a key rotation or an expiry,
//! reload the page for a fresh token.
//!
//! # Privacy and output
//!
//! User ids are never logged. A looked-up id is part of the page's URL
//! (`?user=`), so keep access logs of the admin path private; the page
//! sends `Referrer-Policy: no-referrer` so the id does not leak onwards.
//! Every value on the page is HTML-escaped ([`escape_html`]); responses
//! carry a Content Security Policy that allows no script at all, and
//! `Cache-Control: no-store`.
//!
//! # Example
//!
//! ```
//! use stored_session::admin::{Admin, AdminRequest};
//! use stored_session::{Keyring, SessionStore};
//!
//! let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
//! let mut session = store.load(None)?;
//! session.set_user("alice");
//! let _ = store.save(&mut session)?;
//!
//! let admin = Admin::new(store.clone()).with_mount_path("/admin");
//!
//! // GET the page with the user's sessions. It sets the CSRF nonce cookie
//! // (`__Host-` prefixed: the page is served over HTTPS by default).
//! let page = admin.handle(&AdminRequest::new("GET", "/admin/?user=alice"));
//! assert_eq!(page.status, 200);
//! assert!(page.body.contains("1 live session of <code>alice</code>"));
//! let set_cookie = page.header("Set-Cookie").unwrap();
//! assert!(set_cookie.starts_with("__Host-stored_session_admin="));
//! let cookie = set_cookie.split(';').next().unwrap();
//! // The token the page's forms carry (for this nonce and login, valid an hour).
//! let token = admin
//!     .csrf_token(&AdminRequest::new("GET", "/admin/").cookie_header(cookie.as_bytes()))
//!     .unwrap();
//!
//! // A POST without the token is refused and changes nothing.
//! let refused = admin.handle(
//!     &AdminRequest::new("POST", "/admin/revoke-user")
//!         .cookie_header(cookie.as_bytes())
//!         .body(b"user=alice&confirm=yes"),
//! );
//! assert_eq!(refused.status, 403);
//! assert_eq!(store.sessions_of("alice", None, Default::default())?.sessions.len(), 1);
//!
//! // With it, the user's sessions end.
//! let form = format!("csrf={token}&user=alice&confirm=yes");
//! let done = admin.handle(
//!     &AdminRequest::new("POST", "/admin/revoke-user")
//!         .cookie_header(cookie.as_bytes())
//!         .body(form.as_bytes()),
//! );
//! assert_eq!(done.status, 303);
//! assert!(store.sessions_of("alice", None, Default::default())?.sessions.is_empty());
//! # Ok::<(), stored_session::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use ::cookie::{Cookie, SameSite};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::hmac;
use sha2::{Digest, Sha256};

use crate::cookie_header::cookie_pairs;
use crate::error::Error;
use crate::id;
use crate::store::SessionStore;
use crate::users::{Cursor, Page as ListPage, SessionHandle};

mod html;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "rouille")]
#[cfg_attr(docsrs, doc(cfg(feature = "rouille")))]
pub mod rouille;

pub use self::html::escape_html;
use self::html::{parse_form, url_encode, Notice, Page, UserView};

/// Name of the CSRF nonce cookie on a plain-HTTP page
/// ([`Admin::with_secure_cookie`]`(false)`).
pub const CSRF_COOKIE: &str = "stored_session_admin";

/// Name of the CSRF nonce cookie over HTTPS (the default): the `__Host-`
/// prefix makes browsers accept it only with `Secure`, `Path=/` and no
/// `Domain`, from a secure origin.
pub const CSRF_COOKIE_SECURE: &str = "__Host-stored_session_admin";

/// How long a form token stays valid by default: one hour.
pub const DEFAULT_CSRF_TTL: Duration = Duration::from_secs(3600);

/// Sessions per page of a user's list.
const SESSIONS_PER_PAGE: u32 = ListPage::DEFAULT_LIMIT;

/// Largest form body the admin page accepts, in bytes (its forms are tiny);
/// the glue answers `413` to a larger one.
pub const MAX_BODY: usize = 16 * 1024;

/// Longest user id the lookup accepts, in bytes.
pub(crate) const MAX_USER_ID: usize = 1024;

/// Context of the token MAC (issue time, login hash, nonce).
const CSRF_TOKEN_V2: &[u8] = b"stored-session admin csrf token v2\0";

/// How far in the future a token's issue time may be (clock skew between
/// processes sharing the keys), in seconds.
const CSRF_SKEW: i64 = 60;

/// A token: 8 bytes of issue time (Unix seconds, big-endian) and a 32-byte MAC.
const TOKEN_LEN: usize = 8 + 32;

/// The admin page over a store: routing, rendering and form handling.
/// Cheap to clone; share one between threads.
///
/// See the [module documentation](self) for the routes, the CSRF design
/// and an example.
#[derive(Clone)]
pub struct Admin {
    store: SessionStore,
    base: String,
    secure: bool,
    csrf_key: hmac::Key,
    csrf_ttl: Duration,
    login_cookie: Option<String>,
    csp: String,
}

impl Admin {
    /// The admin page for `store`, mounted at `/admin`, served over HTTPS
    /// (a `__Host-` prefixed, `Secure` nonce cookie), with form tokens valid
    /// for [`DEFAULT_CSRF_TTL`] and bound to no login until you name one
    /// ([`with_login_cookie`](Admin::with_login_cookie)). The CSRF key is derived from
    /// the store's current key.
    pub fn new(store: SessionStore) -> Self {
        let csrf_key = store.macs().admin_csrf().clone();
        let style_hash = STANDARD.encode(Sha256::digest(html::STYLE.as_bytes()));
        let csp = format!(
            "default-src 'none'; style-src 'sha256-{style_hash}'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        Admin {
            store,
            base: "/admin".into(),
            secure: true,
            csrf_key,
            csrf_ttl: DEFAULT_CSRF_TTL,
            login_cookie: None,
            csp,
        }
    }

    /// Where the page is mounted: the path prefix of every route, links
    /// and form actions included (`"/admin"`, `"/ops/sessions"`; `"/"` or
    /// `""` for the root). Pass the glue the request's full path, not one
    /// with the prefix removed.
    pub fn with_mount_path(mut self, path: &str) -> Self {
        let trimmed = path.trim_matches('/');
        self.base = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{}", url_encode(trimmed, true))
        };
        self
    }

    /// Whether the page is served over HTTPS (default: yes). Then the CSRF
    /// nonce cookie is `__Host-stored_session_admin` with `Secure`, `Path=/`
    /// and no `Domain`. Turn it off only for a page served over plain HTTP
    /// (a local demo): the cookie is then `stored_session_admin`, scoped to
    /// the mount path, without `Secure`.
    pub fn with_secure_cookie(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// How long a form token stays valid after the page that carries it
    /// was rendered (default [`DEFAULT_CSRF_TTL`], one hour; at least one
    /// second). Measured with the store's clock ([`Config::clock`](crate::Config)).
    pub fn with_csrf_ttl(mut self, ttl: Duration) -> Self {
        self.csrf_ttl = ttl;
        self
    }

    /// Binds form tokens to the admin's login: the value of the cookie
    /// `name` (your admin sign-in cookie, or the session cookie of an app
    /// that signs admins in with a renewed session). A token minted under
    /// one value is refused under another, so the forms of one sign-in do
    /// not work for the next. Only a hash of the value is used. A request
    /// without the cookie is bound to "no login". [`AdminRequest::login`]
    /// overrides it for one request.
    pub fn with_login_cookie(mut self, name: &str) -> Self {
        self.login_cookie = Some(name.to_owned());
        self
    }

    /// The name of the CSRF nonce cookie: [`CSRF_COOKIE_SECURE`] over HTTPS,
    /// [`CSRF_COOKIE`] with [`with_secure_cookie`](Admin::with_secure_cookie)`(false)`.
    pub fn csrf_cookie_name(&self) -> &'static str {
        if self.secure {
            CSRF_COOKIE_SECURE
        } else {
            CSRF_COOKIE
        }
    }

    /// The store the page shows and acts on.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The mount path as normalised (no trailing slash; empty for the root).
    pub fn mount_path(&self) -> &str {
        &self.base
    }

    /// The form token the page would put in its forms for `request` now:
    /// bound to the request's first nonce cookie and to its login, valid for
    /// [`with_csrf_ttl`](Admin::with_csrf_ttl). `None` when the request carries no
    /// well-formed nonce cookie of this page's name. For tests and for apps
    /// that add their own forms.
    pub fn csrf_token(&self, request: &AdminRequest<'_>) -> Option<String> {
        let nonce = request.nonces(self.csrf_cookie_name()).into_iter().next()?;
        Some(self.mint(&nonce, &self.login_of(request), self.store.now()))
    }

    /// The login a request's tokens are bound to (empty: none).
    fn login_of<'r>(&self, request: &AdminRequest<'r>) -> Vec<u8> {
        if let Some(login) = request.login {
            return login.to_vec();
        }
        let Some(name) = self.login_cookie.as_deref() else {
            return Vec::new();
        };
        request
            .cookie_values(name)
            .into_iter()
            .next()
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    /// The MAC input of a token.
    fn token_message(nonce: &str, login: &[u8], issued: i64) -> Vec<u8> {
        let mut message = Vec::with_capacity(CSRF_TOKEN_V2.len() + 8 + 32 + nonce.len());
        message.extend_from_slice(CSRF_TOKEN_V2);
        message.extend_from_slice(&issued.to_be_bytes());
        message.extend_from_slice(&Sha256::digest(login));
        message.extend_from_slice(nonce.as_bytes());
        message
    }

    fn mint(&self, nonce: &str, login: &[u8], issued: i64) -> String {
        let tag = hmac::sign(&self.csrf_key, &Self::token_message(nonce, login, issued));
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.extend_from_slice(&issued.to_be_bytes());
        token.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(token)
    }

    /// Whether `token` was minted for `nonce` and `login` and is still valid at `now`.
    fn token_valid(&self, token: &str, nonce: &str, login: &[u8], now: i64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        if bytes.len() != TOKEN_LEN {
            return false;
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&bytes[..8]);
        let issued = i64::from_be_bytes(issued);
        let ttl = i64::try_from(self.csrf_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        if issued > now.saturating_add(CSRF_SKEW) || now.saturating_sub(issued) >= ttl {
            return false;
        }
        hmac::verify(
            &self.csrf_key,
            &Self::token_message(nonce, login, issued),
            &bytes[8..],
        )
        .is_ok()
    }

    /// Serves one request. Never fails: a store failure becomes a `500`
    /// page (`503` when retrying later may work: no pooled connection was
    /// free in time, the database did not answer in time or dropped the
    /// connection; `400` for a page cursor this store did not issue),
    /// logged without any user or session id.
    pub fn handle(&self, request: &AdminRequest<'_>) -> AdminResponse {
        let (path, query) = match request.target.split_once('?') {
            Some((p, q)) => (p, q),
            None => (request.target, ""),
        };
        let Some(route) = path.strip_prefix(self.base.as_str()) else {
            return self.not_found();
        };
        let method = request.method.to_ascii_uppercase();
        let read = method == "GET" || method == "HEAD";
        match route {
            "" | "/" if read => self.index(request, query),
            "" | "/" => self.method_not_allowed("GET, HEAD"),
            "/revoke" | "/revoke-user" | "/revoke-all" if method == "POST" => {
                self.action(request, route)
            }
            "/revoke" | "/revoke-user" | "/revoke-all" => self.method_not_allowed("POST"),
            _ => self.not_found(),
        }
    }

    fn index(&self, request: &AdminRequest<'_>, query: &str) -> AdminResponse {
        let params = parse_form(query.as_bytes());
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let user = param("user").map(str::trim).filter(|u| !u.is_empty());
        if user.is_some_and(|u| u.len() > MAX_USER_ID) {
            return self.message(400, "User id too long", "That user id is too long.");
        }
        let count = || param("n").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        let notice = match param("done") {
            Some("revoked") => Some(Notice::Revoked),
            Some("gone") => Some(Notice::Gone),
            Some("user") => Some(Notice::UserRevoked(count())),
            Some("all") => Some(Notice::AllRevoked(count())),
            _ => None,
        };
        let (nonce, set_cookie) = match request.nonces(self.csrf_cookie_name()).into_iter().next() {
            Some(nonce) => (nonce, None),
            None => match id::random_text() {
                Some(nonce) => {
                    let cookie = self.nonce_cookie(&nonce);
                    (nonce, Some(cookie))
                }
                None => return self.failure(&Error::Random),
            },
        };
        let now = self.store.now();
        let csrf = self.mint(&nonce, &self.login_of(request), now);
        let stats = match self.store.stats() {
            Ok(stats) => stats,
            Err(e) => return self.failure(&e),
        };
        let after = param("after").filter(|a| !a.is_empty()).map(Cursor::new);
        let later = after.is_some();
        let page = ListPage {
            limit: SESSIONS_PER_PAGE,
            after,
        };
        let listed = match user
            .map(|u| self.store.sessions_of(u, None, page))
            .transpose()
        {
            Ok(listed) => listed,
            Err(Error::InvalidCursor) => {
                return self.message(
                    400,
                    "Invalid page link",
                    "That page link is not valid (it may be older than a key rotation). \
                     Look the user up again to start from the first page.",
                )
            }
            Err(e) => return self.failure(&e),
        };
        let body = html::index_page(&Page {
            base: &self.base,
            csrf: &csrf,
            stats: &stats,
            now: chrono::DateTime::from_timestamp(now, 0).unwrap_or_default(),
            notice,
            user: user.zip(listed.as_ref()).map(|(user, listed)| UserView {
                user,
                sessions: &listed.sessions,
                next: listed.next.as_ref(),
                later,
            }),
        });
        let mut response = self.html(200, body);
        if let Some(cookie) = set_cookie {
            response.headers.push(("Set-Cookie", cookie));
        }
        response
    }

    fn action(&self, request: &AdminRequest<'_>, route: &str) -> AdminResponse {
        if matches!(request.fetch_site, Some("cross-site" | "same-site")) {
            return self.refused();
        }
        let form = parse_form(request.body);
        let field = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if !self.csrf_ok(request, field("csrf")) {
            return self.refused();
        }
        let confirmed = field("confirm") == Some("yes");
        let user = field("user").map(str::trim).filter(|u| !u.is_empty());
        let back = |user: Option<&str>, done: &str| {
            let mut location = format!("{}/?", self.base);
            if let Some(u) = user {
                location.push_str("user=");
                location.push_str(&url_encode(u, false));
                location.push('&');
            }
            location.push_str("done=");
            location.push_str(done);
            self.redirect(location)
        };
        let missing = |what: &str| {
            self.message(
                400,
                "Incomplete form",
                &format!("Nothing was changed: the form lacks {what}."),
            )
        };
        let result = match route {
            "/revoke" => {
                let (Some(user), Some(handle)) = (user, field("handle")) else {
                    return missing("a user id or a session");
                };
                self.store
                    .revoke(user, &SessionHandle::new(handle))
                    .map(|ended| back(Some(user), if ended { "revoked" } else { "gone" }))
            }
            "/revoke-user" => {
                let Some(user) = user else {
                    return missing("a user id");
                };
                if !confirmed {
                    return missing("the confirmation tick");
                }
                self.store
                    .revoke_user(user)
                    .map(|n| back(Some(user), &format!("user&n={n}")))
            }
            _ => {
                if !confirmed {
                    return missing("the confirmation tick");
                }
                self.store
                    .revoke_all()
                    .map(|n| back(None, &format!("all&n={n}")))
            }
        };
        result.unwrap_or_else(|e| self.failure(&e))
    }

    /// Whether `token` is valid for one of the request's nonce cookies and
    /// its login, now.
    fn csrf_ok(&self, request: &AdminRequest<'_>, token: Option<&str>) -> bool {
        let Some(token) = token else {
            return false;
        };
        let login = self.login_of(request);
        let now = self.store.now();
        request
            .nonces(self.csrf_cookie_name())
            .iter()
            .any(|nonce| self.token_valid(token, nonce, &login, now))
    }

    /// The `Set-Cookie` value that hands `nonce` to the browser.
    fn nonce_cookie(&self, nonce: &str) -> String {
        // `__Host-` (over HTTPS): Secure, Path=/ and no Domain, or browsers
        // drop it. Plain HTTP: scoped to the mount path.
        let path = if self.secure || self.base.is_empty() {
            "/"
        } else {
            &self.base
        };
        Cookie::build((self.csrf_cookie_name(), nonce))
            .path(path)
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .build()
            .to_string()
    }

    fn html(&self, status: u16, body: String) -> AdminResponse {
        AdminResponse {
            status,
            headers: vec![
                ("Content-Type", "text/html; charset=utf-8".into()),
                ("Cache-Control", "no-store".into()),
                ("Content-Security-Policy", self.csp.clone()),
                ("X-Content-Type-Options", "nosniff".into()),
                ("X-Frame-Options", "DENY".into()),
                ("Referrer-Policy", "no-referrer".into()),
            ],
            body,
        }
    }

    fn message(&self, status: u16, title: &str, message: &str) -> AdminResponse {
        self.html(status, html::message_page(&self.base, title, message))
    }

    fn redirect(&self, location: String) -> AdminResponse {
        let mut response = self.html(303, String::new());
        response.headers.push(("Location", location));
        response
    }

    fn refused(&self) -> AdminResponse {
        self.message(
            403,
            "Request refused",
            "The form's security token is missing or invalid, so nothing was changed. \
             Reload the admin page and try again.",
        )
    }

    fn not_found(&self) -> AdminResponse {
        self.message(404, "Not found", "There is no such admin page.")
    }

    fn method_not_allowed(&self, allow: &'static str) -> AdminResponse {
        let mut response = self.message(
            405,
            "Method not allowed",
            "This address only takes the admin page's forms.",
        );
        response.headers.push(("Allow", allow.into()));
        response
    }

    fn failure(&self, error: &Error) -> AdminResponse {
        log::error!(target: "stored_session", "admin page: session store failed: {error}");
        self.message(
            error.http_status(),
            "Session store error",
            "The session store failed; nothing more was changed. The details are in the server log.",
        )
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("base", &self.base)
            .field("secure_cookie", &self.secure)
            .field("csrf_ttl", &self.csrf_ttl)
            .field("login_cookie", &self.login_cookie)
            .finish_non_exhaustive()
    }
}

/// One request to the admin page, as the glue (or your own framework code)
/// hands it over.
///
/// Its `Debug` output shows the method, the path without its query (which
/// may hold a user id), and only the sizes of the cookies and the body: never
/// a cookie value, a CSRF token or a form field.
///
/// ```
/// use stored_session::admin::AdminRequest;
///
/// let request = AdminRequest::new("POST", "/admin/revoke-all")
///     .cookie_header(b"__Host-stored_session_admin=...; theme=dark")
///     .fetch_site("same-origin")
///     .body(b"csrf=...&confirm=yes");
/// let shown = format!("{request:?}");
/// assert!(shown.contains("/admin/revoke-all") && !shown.contains("csrf=") && !shown.contains("theme"));
/// ```
#[derive(Clone)]
pub struct AdminRequest<'a> {
    method: &'a str,
    target: &'a str,
    cookies: Vec<&'a [u8]>,
    body: &'a [u8],
    fetch_site: Option<&'a str>,
    login: Option<&'a [u8]>,
}

impl<'a> AdminRequest<'a> {
    /// A request with `method` for `target`, the full path (mount path
    /// included) and query string, as in the request line: `/admin/?user=42`.
    pub fn new(method: &'a str, target: &'a str) -> Self {
        AdminRequest {
            method,
            target,
            cookies: Vec::new(),
            body: b"",
            fetch_site: None,
            login: None,
        }
    }

    /// Adds one `Cookie` header's value (call once per header).
    pub fn cookie_header(mut self, value: &'a [u8]) -> Self {
        self.cookies.push(value);
        self
    }

    /// The form body of a POST (`application/x-www-form-urlencoded`).
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }

    /// The `Sec-Fetch-Site` header, if the browser sent one.
    pub fn fetch_site(mut self, value: &'a str) -> Self {
        self.fetch_site = Some(value);
        self
    }

    /// The admin login this request belongs to (for example your admin
    /// session's id, or a per-sign-in random value): form tokens are bound
    /// to it (only its hash is used). Overrides [`Admin::with_login_cookie`].
    pub fn login(mut self, login: &'a [u8]) -> Self {
        self.login = Some(login);
        self
    }

    /// The distinct values of the cookies named exactly `name`, as sent, at
    /// most four: the name is matched byte for byte on the raw headers
    /// (see [`cookie_pairs`]), as the adapters match the session cookie.
    fn cookie_values(&self, name: &str) -> Vec<&'a [u8]> {
        let mut found: Vec<&'a [u8]> = Vec::new();
        for &header in &self.cookies {
            for (pair_name, value) in cookie_pairs(header) {
                if pair_name == name.as_bytes() && !found.contains(&value) && found.len() < 4 {
                    found.push(value);
                }
            }
        }
        found
    }

    /// The well-formed nonce cookie values presented (at most a few): a
    /// nonce has the shape of a session id ([`id::well_formed`]).
    fn nonces(&self, name: &str) -> Vec<String> {
        self.cookie_values(name)
            .into_iter()
            .filter(|v| id::well_formed(v))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
}

impl fmt::Debug for AdminRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match self.target.split_once('?') {
            Some((path, _)) => format!("{path}?<redacted>"),
            None => self.target.to_owned(),
        };
        f.debug_struct("AdminRequest")
            .field("method", &self.method)
            .field("path", &path)
            .field(
                "cookie_headers",
                &format_args!("{} redacted", self.cookies.len()),
            )
            .field("body", &format_args!("{} bytes redacted", self.body.len()))
            .field("fetch_site", &self.fetch_site)
            .field("login", &self.login.map(|_| "<redacted>"))
            .finish()
    }
}

/// The admin page's answer: status, headers (content type, security
/// headers, `Set-Cookie`, `Location`) and an HTML body.
///
/// Its `Debug` output redacts `Set-Cookie` values and the body (which holds
/// CSRF tokens).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminResponse {
    /// HTTP status code.
    pub status: u16,
    /// Header names and values, in order (a name may repeat).
    pub headers: Vec<(&'static str, String)>,
    /// The HTML page (empty for a redirect).
    pub body: String,
}

impl fmt::Debug for AdminResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                if name.eq_ignore_ascii_case("set-cookie") {
                    (*name, "<redacted>")
                } else {
                    (*name, value.as_str())
                }
            })
            .collect();
        f.debug_struct("AdminResponse")
            .field("status", &self.status)
            .field("headers", &headers)
            .field("body", &format_args!("{} bytes redacted", self.body.len()))
            .finish()
    }
}

impl AdminResponse {
    /// The first value of header `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `413 Payload Too Large` answer for a body over [`MAX_BODY`].
    pub fn too_large() -> Self {
        AdminResponse {
            status: 413,
            headers: vec![
                ("Content-Type", "text/plain; charset=utf-8".into()),
                ("Cache-Control", "no-store".into()),
            ],
            body: "form too large\n".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyring;

    fn admin() -> Admin {
        let store = SessionStore::builder(Keyring::generate())
            .open_migrated("sqlite::memory:")
            .unwrap();
        Admin::new(store)
    }

    #[test]
    fn mount_paths() {
        assert_eq!(admin().mount_path(), "/admin");
        assert_eq!(admin().with_mount_path("/").mount_path(), "");
        assert_eq!(
            admin().with_mount_path("ops/sessions/").mount_path(),
            "/ops/sessions"
        );
        assert_eq!(admin().with_mount_path("/a b\"").mount_path(), "/a%20b%22");
    }

    #[test]
    fn routing() {
        let a = admin();
        let get = |target| a.handle(&AdminRequest::new("GET", target)).status;
        assert_eq!(get("/admin"), 200);
        assert_eq!(get("/admin/"), 200);
        assert_eq!(get("/admin/?user="), 200);
        assert_eq!(get("/admin/nope"), 404);
        assert_eq!(get("/other"), 404);
        assert_eq!(get("/admin/revoke"), 405);
        assert_eq!(
            a.handle(&AdminRequest::new("DELETE", "/admin/")).status,
            405
        );
        let root = admin().with_mount_path("/");
        assert_eq!(root.handle(&AdminRequest::new("GET", "/")).status, 200);
        let long = format!("/admin/?user={}", "x".repeat(MAX_USER_ID + 1));
        assert_eq!(get(&long), 400);
    }

    #[test]
    fn tokens() {
        let a = admin();
        let nonce = id::random_text().unwrap();
        assert!(id::well_formed(nonce.as_bytes()));
        let cookie = format!("{CSRF_COOKIE_SECURE}={nonce}");
        let req = AdminRequest::new("POST", "/admin/revoke-all").cookie_header(cookie.as_bytes());
        let token = a.csrf_token(&req).unwrap();
        assert!(a.csrf_ok(&req, Some(&token)));
        assert!(!a.csrf_ok(&req, Some("AAAA")));
        assert!(!a.csrf_ok(&req, Some("%%%")));
        assert!(!a.csrf_ok(&req, None));
        // No nonce, a short one, or the unprefixed name over HTTPS: no token.
        assert!(a.csrf_token(&AdminRequest::new("GET", "/admin/")).is_none());
        let short = format!("{CSRF_COOKIE_SECURE}=short");
        let req_short = AdminRequest::new("GET", "/admin/").cookie_header(short.as_bytes());
        assert!(a.csrf_token(&req_short).is_none());
        let plain = format!("{CSRF_COOKIE}={nonce}");
        let req_plain =
            AdminRequest::new("POST", "/admin/revoke-all").cookie_header(plain.as_bytes());
        assert!(a.csrf_token(&req_plain).is_none());
        assert!(!a.csrf_ok(&req_plain, Some(&token)));
        let other = format!("{CSRF_COOKIE_SECURE}={}", id::random_text().unwrap());
        let req2 = AdminRequest::new("POST", "/admin/revoke-all").cookie_header(other.as_bytes());
        assert!(!a.csrf_ok(&req2, Some(&token)));
        // Another store (other keys) does not accept this store's tokens.
        assert!(!admin().csrf_ok(&req, Some(&token)));
        // Bound to the login: explicit, or the configured login cookie.
        let bound = req.clone().login(b"admin-login-1");
        let token1 = a.csrf_token(&bound).unwrap();
        assert!(a.csrf_ok(&bound, Some(&token1)));
        assert!(!a.csrf_ok(&req, Some(&token1)));
        assert!(!a.csrf_ok(&req.clone().login(b"admin-login-2"), Some(&token1)));
        let b = a.clone().with_login_cookie("app_admin");
        let with = |login: &str| format!("{cookie}; app_admin={login}");
        let (c1, c2) = (with("one"), with("two"));
        let r1 = AdminRequest::new("POST", "/admin/revoke-all").cookie_header(c1.as_bytes());
        let r2 = AdminRequest::new("POST", "/admin/revoke-all").cookie_header(c2.as_bytes());
        let t1 = b.csrf_token(&r1).unwrap();
        assert!(b.csrf_ok(&r1, Some(&t1)));
        assert!(!b.csrf_ok(&r2, Some(&t1)));
        assert!(!b.csrf_ok(&req, Some(&t1)));
    }

    #[test]
    fn nonce_cookie_attributes() {
        let nonce = id::random_text().unwrap();
        let attributes = |a: Admin| {
            let set = a.nonce_cookie(&nonce);
            let (pair, rest) = set.split_once("; ").unwrap();
            let mut attributes: Vec<String> = rest.split("; ").map(str::to_owned).collect();
            attributes.sort_unstable();
            (pair.to_owned(), attributes)
        };
        let secure = format!("{CSRF_COOKIE_SECURE}={nonce}");
        let plain = format!("{CSRF_COOKIE}={nonce}");
        for a in [
            admin(),
            admin().with_mount_path("/"),
            admin().with_mount_path("/ops"),
        ] {
            assert_eq!(
                attributes(a),
                (
                    secure.clone(),
                    vec![
                        "HttpOnly".into(),
                        "Path=/".into(),
                        "SameSite=Strict".into(),
                        "Secure".into()
                    ]
                )
            );
        }
        for (mount, path) in [("/", "Path=/"), ("/ops/a b", "Path=/ops/a%20b")] {
            let a = admin().with_mount_path(mount).with_secure_cookie(false);
            assert_eq!(
                attributes(a),
                (
                    plain.clone(),
                    vec!["HttpOnly".into(), path.to_owned(), "SameSite=Strict".into()]
                )
            );
        }
    }

    #[test]
    fn cookies_are_matched_by_exact_name_on_the_raw_header() {
        let a = admin().with_login_cookie("app_admin");
        let nonce = id::random_text().unwrap();
        let token_for = |header: &[u8]| {
            a.csrf_token(&AdminRequest::new("GET", "/admin/").cookie_header(header))
        };
        // Read: among others, past a pair that is not UTF-8 and one without `=`.
        for header in [
            format!("theme=dark; {CSRF_COOKIE_SECURE}={nonce}").into_bytes(),
            [
                &b"junk=\xff; flag; "[..],
                CSRF_COOKIE_SECURE.as_bytes(),
                b"=",
                nonce.as_bytes(),
            ]
            .concat(),
        ] {
            assert!(token_for(&header).is_some(), "{header:?}");
        }
        // Not read: a name or value that differs by a byte from what was set.
        for header in [
            format!("{CSRF_COOKIE_SECURE} ={nonce}"),
            format!("\u{a0}{CSRF_COOKIE_SECURE}={nonce}"),
            format!("{CSRF_COOKIE_SECURE}\u{a0}={nonce}"),
            format!("{CSRF_COOKIE_SECURE}= {nonce}"),
            format!("{CSRF_COOKIE_SECURE}=\"{nonce}\""),
            format!("__host-stored_session_admin={nonce}"),
        ] {
            assert!(token_for(header.as_bytes()).is_none(), "{header:?}");
        }
        // The login cookie too: a token bound to `app_admin=one` fails when
        // only a look-alike name carries that login.
        fn post(header: &str) -> AdminRequest<'_> {
            AdminRequest::new("POST", "/admin/revoke-all").cookie_header(header.as_bytes())
        }
        let with = |login: &str| format!("{CSRF_COOKIE_SECURE}={nonce}; {login}");
        let bound = with("app_admin=one");
        let token = a.csrf_token(&post(&bound)).unwrap();
        assert!(a.csrf_ok(&post(&bound), Some(&token)));
        for other in ["app_admin =one", "\u{a0}app_admin=one", "APP_ADMIN=one"] {
            assert!(!a.csrf_ok(&post(&with(other)), Some(&token)), "{other}");
        }
    }

    #[test]
    fn store_failures_answer_as_the_adapters_do() {
        // No tables: every query fails with a database error.
        let store = SessionStore::builder(Keyring::generate())
            .open("sqlite::memory:")
            .unwrap();
        let a = Admin::new(store);
        let page = a.handle(&AdminRequest::new("GET", "/admin/"));
        assert_eq!(page.status, 500);
        assert!(page.body.contains("Session store error"), "{}", page.body);
        // The one mapping: 503 for an error worth retrying later.
        let timeout = Error::Timeout {
            timeout: Duration::from_secs(1),
        };
        assert_eq!(a.failure(&timeout).status, 503);
        assert_eq!(a.failure(&Error::Random).status, 500);
    }

    #[test]
    fn tokens_expire() {
        let clock =
            crate::ManualClock::new(chrono::DateTime::from_timestamp(2_000_000_000, 0).unwrap());
        let store = SessionStore::builder(Keyring::generate())
            .config(crate::Config::default().clock(clock.clock()))
            .open_migrated("sqlite::memory:")
            .unwrap();
        let a = Admin::new(store).with_csrf_ttl(Duration::from_secs(600));
        let cookie = format!("{CSRF_COOKIE_SECURE}={}", id::random_text().unwrap());
        let req = AdminRequest::new("POST", "/admin/revoke-all").cookie_header(cookie.as_bytes());
        let token = a.csrf_token(&req).unwrap();
        clock.advance(Duration::from_secs(599));
        assert!(a.csrf_ok(&req, Some(&token)));
        clock.advance(Duration::from_secs(1));
        assert!(
            !a.csrf_ok(&req, Some(&token)),
            "a token 600 s old is expired"
        );
        // Issued more than a minute in the future: refused.
        let future = a.mint(
            &req.nonces(CSRF_COOKIE_SECURE)[0],
            b"",
            a.store.now() + CSRF_SKEW + 1,
        );
        assert!(!a.csrf_ok(&req, Some(&future)));
        let near = a.mint(&req.nonces(CSRF_COOKIE_SECURE)[0], b"", a.store.now() + 30);
        assert!(a.csrf_ok(&req, Some(&near)));
    }

    #[test]
    fn debug_output_is_redacted() {
        let secret_cookie = "__Host-stored_session_admin=NONCE-SECRET-VALUE; id=SESSION-SECRET";
        let body = b"csrf=TOKEN-SECRET&user=alice-secret&confirm=yes";
        let request = AdminRequest::new("POST", "/admin/revoke?user=alice-secret")
            .cookie_header(secret_cookie.as_bytes())
            .body(body)
            .login(b"LOGIN-SECRET")
            .fetch_site("same-origin");
        let shown = format!("{request:?}");
        for secret in [
            "NONCE-SECRET",
            "SESSION-SECRET",
            "TOKEN-SECRET",
            "alice-secret",
            "LOGIN-SECRET",
            "csrf",
        ] {
            // Neither as text nor as a list of bytes (a derived Debug of `&[u8]`).
            let bytes = format!("{:?}", secret.as_bytes());
            let bytes = bytes.trim_matches(|c| c == '[' || c == ']');
            assert!(!shown.contains(secret), "{secret} in {shown}");
            assert!(!shown.contains(bytes), "{secret} as bytes in {shown}");
        }
        assert!(
            shown.contains("\"POST\"") && shown.contains("/admin/revoke?<redacted>"),
            "{shown}"
        );
        let sizes = format!("{} bytes redacted", body.len());
        assert!(
            shown.contains("1 redacted") && shown.contains(&sizes),
            "{shown}"
        );
        let a = admin();
        let page = a.handle(&AdminRequest::new("GET", "/admin/"));
        let nonce = page
            .header("Set-Cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned();
        let shown = format!("{page:?}");
        assert!(!shown.contains(&nonce), "{shown}");
        assert!(!shown.contains("name=\"csrf\""), "{shown}");
        assert!(shown.contains("Set-Cookie") && shown.contains("<redacted>"));
    }
}
