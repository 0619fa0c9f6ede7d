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
//! Relative to the mount path ([`Admin::mount_path`], `/admin` by default):
//!
//! | method | path | what |
//! |---|---|---|
//! | `GET` | `/` (and the bare mount path) | the page; `?user=ID` adds the user's sessions |
//! | `POST` | `/revoke` | form `csrf`, `user`, `handle`: ends one session |
//! | `POST` | `/revoke-user` | form `csrf`, `user`, `confirm=yes`: ends all of the user's sessions |
//! | `POST` | `/revoke-all` | form `csrf`, `confirm=yes`: ends every session |
//!
//! A POST answers `303 See Other` back to the page, which shows what was
//! done. State changes only by POST: the same paths answer `405` to a GET.
//!
//! # CSRF protection
//!
//! A signed double-submit token. The page sets a random nonce cookie
//! (`stored_session_admin`, HttpOnly, `SameSite=Strict`, scoped to the
//! mount path); every form carries `HMAC-SHA256(k, nonce)` in a hidden
//! `csrf` field, where `k` is derived from the store's current key (so
//! every process with the same keys accepts the same tokens). A POST is
//! refused with `403 Forbidden`, and changes nothing, when the field is
//! missing or does not match the cookie, or when the browser says the
//! request came from another site (`Sec-Fetch-Site: cross-site` or
//! `same-site`). After a key rotation, reload the page for a fresh token.
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
//! let _ = store.commit(&mut session)?;
//!
//! let admin = Admin::new(store.clone()).mount_path("/admin");
//!
//! // GET the page with the user's sessions. It sets the CSRF nonce cookie.
//! let page = admin.handle(&AdminRequest::new("GET", "/admin/?user=alice"));
//! assert_eq!(page.status, 200);
//! assert!(page.body.contains("1 live session of <code>alice</code>"));
//! let set_cookie = page.header("Set-Cookie").unwrap();
//! let cookie = set_cookie.split(';').next().unwrap();
//! let token = admin.csrf_token(cookie.split_once('=').unwrap().1).unwrap();
//!
//! // A POST without the token is refused and changes nothing.
//! let refused = admin.handle(
//!     &AdminRequest::new("POST", "/admin/revoke-user")
//!         .cookie_header(cookie.as_bytes())
//!         .body(b"user=alice&confirm=yes"),
//! );
//! assert_eq!(refused.status, 403);
//! assert_eq!(store.sessions_of("alice", None)?.len(), 1);
//!
//! // With it, the user's sessions end.
//! let form = format!("csrf={token}&user=alice&confirm=yes");
//! let done = admin.handle(
//!     &AdminRequest::new("POST", "/admin/revoke-user")
//!         .cookie_header(cookie.as_bytes())
//!         .body(form.as_bytes()),
//! );
//! assert_eq!(done.status, 303);
//! assert!(store.sessions_of("alice", None)?.is_empty());
//! # Ok::<(), stored_session::Error>(())
//! ```

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::store::SessionStore;
use crate::users::SessionHandle;

mod html;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "rouille")]
#[cfg_attr(docsrs, doc(cfg(feature = "rouille")))]
pub mod rouille;

pub use self::html::escape_html;
use self::html::{parse_form, url_encode, Notice, Page};

/// Name of the CSRF nonce cookie.
pub const CSRF_COOKIE: &str = "stored_session_admin";

/// Largest form body the admin page accepts, in bytes (its forms are tiny);
/// the glue answers `413` to a larger one.
pub const MAX_BODY: usize = 16 * 1024;

/// Longest user id the lookup accepts, in bytes.
pub(crate) const MAX_USER_ID: usize = 1024;

/// Context of the CSRF key derivation.
const CSRF_INFO: &[u8] = b"stored-session v1 admin csrf";

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
    csp: String,
}

impl Admin {
    /// The admin page for `store`, mounted at `/admin`, with a `Secure`
    /// nonce cookie. The CSRF key is derived from the store's current key.
    pub fn new(store: SessionStore) -> Self {
        let csrf_key = csrf_key(&store);
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
            csp,
        }
    }

    /// Where the page is mounted: the path prefix of every route, links
    /// and form actions included (`"/admin"`, `"/ops/sessions"`; `"/"` or
    /// `""` for the root). Pass the glue the request's full path, not one
    /// with the prefix removed.
    pub fn mount_path(mut self, path: &str) -> Self {
        let trimmed = path.trim_matches('/');
        self.base = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{}", url_encode(trimmed, true))
        };
        self
    }

    /// Whether the CSRF nonce cookie is marked `Secure` (default: yes).
    /// Turn it off only for a page served over plain HTTP (a local demo).
    pub fn secure_cookie(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The store the page shows and acts on.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The mount path as normalised (no trailing slash; empty for the root).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The form token for a nonce cookie value: what the page puts in its
    /// forms' `csrf` field. `None` when `nonce` is not a nonce this page
    /// could have issued. For tests and for apps that add their own forms.
    pub fn csrf_token(&self, nonce: &str) -> Option<String> {
        valid_nonce(nonce)
            .then(|| URL_SAFE_NO_PAD.encode(hmac::sign(&self.csrf_key, nonce.as_bytes())))
    }

    /// Serves one request. Never fails: a store failure becomes a `500`
    /// page (`503` when no pooled connection was free in time), logged
    /// without any user or session id.
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
        let (nonce, set_cookie) = match request.nonces().into_iter().next() {
            Some(nonce) => (nonce, None),
            None => match new_nonce() {
                Some(nonce) => {
                    let cookie = self.nonce_cookie(&nonce);
                    (nonce, Some(cookie))
                }
                None => return self.failure(&Error::State("the OS random generator failed")),
            },
        };
        let Some(csrf) = self.csrf_token(&nonce) else {
            return self.failure(&Error::State("the admin page drew an invalid nonce"));
        };
        let stats = match self.store.stats() {
            Ok(stats) => stats,
            Err(e) => return self.failure(&e),
        };
        let sessions = match user.map(|u| self.store.sessions_of(u, None)).transpose() {
            Ok(sessions) => sessions,
            Err(e) => return self.failure(&e),
        };
        let body = html::index_page(&Page {
            base: &self.base,
            csrf: &csrf,
            stats: &stats,
            now: chrono::DateTime::from_timestamp(self.store.now(), 0).unwrap_or_default(),
            notice,
            user: user.zip(sessions.as_deref()),
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

    /// Whether `token` is the HMAC of one of the request's nonce cookies.
    fn csrf_ok(&self, request: &AdminRequest<'_>, token: Option<&str>) -> bool {
        let Some(tag) = token.and_then(|t| URL_SAFE_NO_PAD.decode(t.trim()).ok()) else {
            return false;
        };
        request
            .nonces()
            .iter()
            .any(|nonce| hmac::verify(&self.csrf_key, nonce.as_bytes(), &tag).is_ok())
    }

    fn nonce_cookie(&self, nonce: &str) -> String {
        let path = if self.base.is_empty() {
            "/"
        } else {
            &self.base
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{CSRF_COOKIE}={nonce}; Path={path}; HttpOnly; SameSite=Strict{secure}")
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
        let status = match error {
            Error::PoolTimeout { .. } | Error::Timeout { .. } => 503,
            _ => 500,
        };
        self.message(
            status,
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
            .finish_non_exhaustive()
    }
}

/// The CSRF key: derived from the store's current key (HMAC-SHA256 over a
/// fixed context, as a PRF), so all processes sharing the keys agree.
fn csrf_key(store: &SessionStore) -> hmac::Key {
    let text = store.keyring().current().to_base64();
    let material = Zeroizing::new(URL_SAFE_NO_PAD.decode(text.as_bytes()).unwrap_or_default());
    let master = hmac::Key::new(hmac::HMAC_SHA256, &material);
    let derived = hmac::sign(&master, CSRF_INFO);
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// A fresh nonce: 32 random bytes as URL-safe base64 (43 characters), or
/// `None` when the OS generator fails.
fn new_nonce() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

fn valid_nonce(nonce: &str) -> bool {
    nonce.len() == 43
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One request to the admin page, as the glue (or your own framework code)
/// hands it over.
///
/// ```
/// use stored_session::admin::AdminRequest;
///
/// let request = AdminRequest::new("POST", "/admin/revoke-all")
///     .cookie_header(b"stored_session_admin=...; theme=dark")
///     .fetch_site("same-origin")
///     .body(b"csrf=...&confirm=yes");
/// # let _ = request;
/// ```
#[derive(Debug, Clone)]
pub struct AdminRequest<'a> {
    method: &'a str,
    target: &'a str,
    cookies: Vec<&'a [u8]>,
    body: &'a [u8],
    fetch_site: Option<&'a str>,
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

    /// The well-formed nonce cookie values presented (at most a few).
    fn nonces(&self) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        for header in &self.cookies {
            let Ok(text) = std::str::from_utf8(header) else {
                continue;
            };
            for cookie in ::cookie::Cookie::split_parse(text).flatten() {
                if cookie.name() == CSRF_COOKIE
                    && valid_nonce(cookie.value())
                    && !found.iter().any(|n| n == cookie.value())
                    && found.len() < 4
                {
                    found.push(cookie.value().to_owned());
                }
            }
        }
        found
    }
}

/// The admin page's answer: status, headers (content type, security
/// headers, `Set-Cookie`, `Location`) and an HTML body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminResponse {
    /// HTTP status code.
    pub status: u16,
    /// Header names and values, in order (a name may repeat).
    pub headers: Vec<(&'static str, String)>,
    /// The HTML page (empty for a redirect).
    pub body: String,
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
        assert_eq!(admin().base(), "/admin");
        assert_eq!(admin().mount_path("/").base(), "");
        assert_eq!(admin().mount_path("ops/sessions/").base(), "/ops/sessions");
        assert_eq!(admin().mount_path("/a b\"").base(), "/a%20b%22");
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
        let root = admin().mount_path("/");
        assert_eq!(root.handle(&AdminRequest::new("GET", "/")).status, 200);
        let long = format!("/admin/?user={}", "x".repeat(MAX_USER_ID + 1));
        assert_eq!(get(&long), 400);
    }

    #[test]
    fn tokens() {
        let a = admin();
        assert!(a.csrf_token("short").is_none());
        let nonce = new_nonce().unwrap();
        assert!(valid_nonce(&nonce));
        let token = a.csrf_token(&nonce).unwrap();
        let cookie = format!("{CSRF_COOKIE}={nonce}");
        let req = AdminRequest::new("POST", "/admin/revoke-all").cookie_header(cookie.as_bytes());
        assert!(a.csrf_ok(&req, Some(&token)));
        assert!(!a.csrf_ok(&req, Some("AAAA")));
        assert!(!a.csrf_ok(&req, Some("%%%")));
        assert!(!a.csrf_ok(&req, None));
        let other = format!("{CSRF_COOKIE}={}", new_nonce().unwrap());
        let req = AdminRequest::new("POST", "/admin/revoke-all").cookie_header(other.as_bytes());
        assert!(!a.csrf_ok(&req, Some(&token)));
        // Another store (other keys) does not accept this store's tokens.
        let req = AdminRequest::new("POST", "/admin/revoke-all").cookie_header(cookie.as_bytes());
        assert!(!admin().csrf_ok(&req, Some(&token)));
    }
}
