//! The demo application: sessions on a rouille server, with per-user
//! session lists and the admin page.
//!
//! ```sh
//! cargo run --example demo --features rouille,admin
//! ADMIN_TOKEN=change-me cargo run --example demo --features rouille,admin
//! ```
//!
//! * Listens on `127.0.0.1:$PORT` (default 8000).
//! * Stores sessions in `$DATABASE_URL` (default: the SQLite file
//!   `demo-sessions.db` in the working directory), migrated on start.
//! * Encrypts with the keys in `$STORED_SESSION_KEYS`, or with a key kept in
//!   the file `.stored-session-key` (created on the first run), so restarts
//!   keep sessions.
//! * Records client metadata: the IP address truncated to its /24 (IPv4)
//!   or /48 (IPv6) network, and the user agent, encrypted in the session.
//! * Serves plain HTTP, so the cookie's `Secure` flag is turned off (and it
//!   says so on start).
//! * With the `devices` feature, records a device label ("Firefox on
//!   Linux"); with the `geoip` feature and `GEOIP_DB=/path/file.mmdb`, the
//!   client's country and city (all encrypted in the session).
//! * With `TRUST_PROXY=1`, takes the client's address from
//!   `X-Forwarded-For` sent by a proxy on 127.0.0.1 (never by default).
//!
//! Routes (text/plain unless noted):
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | counts visits in the session: `visits: N` and `user: NAME` (or `anonymous`), and once after a login `flash: welcome NAME` |
//! | `GET /csrf` | the session's CSRF token (for `X-CSRF-Token` or a form field `csrf_token`) |
//! | `POST /login` (form field `user`, optional `remember`: `1` or `on`) | renews the session id, binds the session to the user, leaves the flash message `welcome NAME` for the next page: `logged in as NAME`. With `remember`, the session idles out after 30 days and the cookie has that `Max-Age`; without it, the cookie is a browser-session cookie and the session idles out after 2 hours |
//! | `POST /logout` | destroys the session and removes the cookie: `logged out` |
//! | `GET /sessions` | the signed-in user's live sessions, newest first, 50 per page, one line each: `session HANDLE created TIME last-active TIME ip IP agent AGENT device DEVICE location CITY, CC` (`-` when unknown), the visitor's own line ending with ` current`; when there are more, a last line `next /sessions?after=CURSOR` (401 when not signed in, 400 for a cursor that is not the user's) |
//! | `POST /sessions/revoke-others` | ends the user's other sessions: `revoked N` (401 when not signed in) |
//! | `GET /health` | `ok`, never touches the session |
//!
//! Every `POST` from a browser on another site (`Sec-Fetch-Site:
//! cross-site`, or a foreign `Origin`) is refused with 403; requests
//! without browser headers (curl) pass. A request that sends a CSRF token
//! must send the session's own (403 otherwise).
//! | `/admin/…` | the admin page (HTML), see below |
//!
//! # The admin page
//!
//! [`stored_session::admin`] is mounted at `/admin`, guarded by the token in
//! `$ADMIN_TOKEN`. Without it (unset or empty) every `/admin` address
//! answers 404 and the demo says on start that the page is disabled. With
//! it, a request is let in when it either
//!
//! * carries `Authorization: Bearer <token>` (for curl and scripts), or
//! * carries the `demo_admin` cookie, which `POST /admin/login` (form field
//!   `token`; the form is at `GET /admin/login`) sets after checking the
//!   token. The cookie holds a random value drawn for that sign-in and a
//!   MAC of it under a secret drawn at start (never the token), is
//!   HttpOnly, `SameSite=Strict` and scoped to `/admin`, and stops working
//!   when the demo restarts. The admin page's form tokens are bound to it
//!   ([`Admin::with_login_cookie`]), so forms rendered for one sign-in are
//!   refused after another, and they expire after an hour.
//!
//! Tokens are compared in constant time (SHA-256 of both, then a
//! byte-wise comparison without early exit). A browser without the cookie
//! is sent to the login form; other requests get 401. The page's own forms
//! are CSRF-protected by the admin module.
//!
//! Try it with curl and a cookie jar:
//!
//! ```sh
//! curl -c jar -b jar http://127.0.0.1:8000/
//! curl -c jar -b jar -d user=alice http://127.0.0.1:8000/login
//! curl -c jar -b jar http://127.0.0.1:8000/
//! curl -c jar -b jar http://127.0.0.1:8000/sessions
//! curl -c jar -b jar -X POST http://127.0.0.1:8000/sessions/revoke-others
//! curl -c jar -b jar -X POST http://127.0.0.1:8000/logout
//! curl -H "Authorization: Bearer $ADMIN_TOKEN" 'http://127.0.0.1:8000/admin/?user=alice'
//! ```
//!
//! and open <http://127.0.0.1:8000/admin/> in a browser.

use ring::hmac;
use rouille::{Request, Response};
use sha2::{Digest, Sha256};
use stored_session::adapters::rouille::with_session;
use stored_session::adapters::{CookiePolicy, LazySession, Sessions, TrustedProxies};
use stored_session::admin::{self, escape_html, Admin};
use stored_session::{Cursor, Error, Page, SessionId, SessionStore};

#[path = "support/keys.rs"]
mod keys;
use keys::keyring;
#[path = "support/config.rs"]
pub mod config;
use config::demo_config;

fn main() {
    if let Err(message) = run() {
        eprintln!("demo: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let port = match std::env::var("PORT") {
        Ok(p) => p
            .parse::<u16>()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        Err(_) => 8000,
    };
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://demo-sessions.db".into());

    let keyring = keyring()?;
    let store = SessionStore::builder(keyring)
        .config(demo_config()?)
        .open_migrated(&url)
        .map_err(|e| format!("cannot open the session database: {e}"))?;
    // Plain HTTP: a Secure cookie would not come back from most browsers.
    let policy = CookiePolicy::new().with_secure(false);
    let sessions =
        Sessions::with_policy(store, policy).map_err(|e| format!("cookie policy: {e}"))?;
    // TRUST_PROXY=1: a reverse proxy on this machine forwards the client's
    // address in X-Forwarded-For; believe it from 127.0.0.1 only.
    let trust_proxy = std::env::var("TRUST_PROXY").is_ok_and(|v| v == "1");
    let sessions = if trust_proxy {
        sessions
            .with_trusted_proxies(TrustedProxies::new().with("127.0.0.1"))
            .map_err(|e| format!("trusted proxies: {e}"))?
    } else {
        sessions
    };
    let admin_token = std::env::var("ADMIN_TOKEN").ok();
    let demo = Demo::new(sessions, admin_token.as_deref());

    let addr = format!("127.0.0.1:{port}");
    let admin_enabled = demo.admin.is_some();
    let server = rouille::Server::new(&addr, move |request| app(&demo, request))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let base = format!("http://{}", server.server_addr());
    println!("stored-session demo on {base}/");
    println!("sessions in {}", stored_session::redact_url(&url));
    println!("recording client metadata: IP address truncated to /24 or /48, user agent");
    if trust_proxy {
        println!("TRUST_PROXY=1: the client address comes from X-Forwarded-For sent by 127.0.0.1");
    }
    if admin_enabled {
        println!("admin page: {base}/admin/ (sign in at {base}/admin/login with $ADMIN_TOKEN, or send Authorization: Bearer $ADMIN_TOKEN)");
    } else {
        println!("admin page: disabled (set ADMIN_TOKEN to enable {base}/admin/)");
    }
    println!(
        "note: plain HTTP, so the session cookie's Secure flag is OFF; keep it on in production"
    );
    server.run();
    Ok(())
}

/// The demo's state: the sessions and, when `ADMIN_TOKEN` is set, the
/// admin page with its gate.
pub struct Demo {
    /// The store and cookie policy.
    pub sessions: Sessions,
    /// The admin page, `None` when disabled.
    pub admin: Option<AdminGate>,
}

/// The admin page behind the demo's token check.
pub struct AdminGate {
    admin: Admin,
    /// SHA-256 of `ADMIN_TOKEN`.
    token_digest: [u8; 32],
    /// Signs the `demo_admin` cookie values: a random key drawn at start.
    cookie_key: hmac::Key,
}

/// The admin sign-in cookie.
const ADMIN_COOKIE: &str = "demo_admin";

impl Demo {
    /// The demo over `sessions`; the admin page is enabled by a non-empty
    /// `admin_token`.
    pub fn new(sessions: Sessions, admin_token: Option<&str>) -> Self {
        let admin = admin_token
            .filter(|t| !t.is_empty())
            .map(|token| AdminGate {
                // Plain HTTP: the nonce cookie cannot be Secure (nor
                // `__Host-`) either. Form tokens are bound to the sign-in.
                admin: Admin::new(sessions.store().clone())
                    .with_mount_path("/admin")
                    .with_secure_cookie(false)
                    .with_login_cookie(ADMIN_COOKIE),
                token_digest: Sha256::digest(token.as_bytes()).into(),
                cookie_key: hmac::Key::new(
                    hmac::HMAC_SHA256,
                    SessionId::generate().as_cookie_value().as_bytes(),
                ),
            });
        Demo { sessions, admin }
    }
}

impl AdminGate {
    /// Whether `candidate` is the admin token (constant time).
    fn token_matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        same(&digest, &self.token_digest)
    }

    /// A new sign-in cookie value: `RANDOM.MAC`, a random value drawn for
    /// this sign-in and its MAC under the start-up key (no server state).
    fn new_cookie_value(&self) -> String {
        let random = SessionId::generate();
        let mac = hmac::sign(&self.cookie_key, random.as_cookie_value().as_bytes());
        let mac: String = mac.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{}.{mac}", random.as_cookie_value())
    }

    /// Whether `value` is a sign-in cookie this process issued.
    fn cookie_valid(&self, value: &str) -> bool {
        let Some((random, mac)) = value.split_once('.') else {
            return false;
        };
        let mac: Option<Vec<u8>> = (mac.len() == 64 && mac.is_ascii())
            .then(|| {
                (0..32)
                    .map(|i| u8::from_str_radix(&mac[2 * i..2 * i + 2], 16).ok())
                    .collect()
            })
            .flatten();
        mac.is_some_and(|mac| hmac::verify(&self.cookie_key, random.as_bytes(), &mac).is_ok())
    }

    /// Whether the request carries the bearer token or a sign-in cookie.
    fn authorized(&self, request: &Request) -> bool {
        let bearer = request
            .header("Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.token_matches(t.trim()));
        let cookie = rouille::input::cookies(request)
            .filter(|(name, _)| *name == ADMIN_COOKIE)
            .any(|(_, value)| self.cookie_valid(value));
        bearer || cookie
    }
}

/// Equality of two byte strings without an early exit on the first
/// difference (lengths are public: both sides are digests or fixed-length
/// random values).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The demo's routes.
pub fn app(demo: &Demo, request: &Request) -> Response {
    let sessions = &demo.sessions;
    let path = request.url();
    if path == "/admin" || path.starts_with("/admin/") {
        return admin_routes(demo, request);
    }
    if let Some(refused) = cross_site(sessions, request) {
        return refused;
    }
    match (request.method(), path.as_str()) {
        ("GET", "/health") => Response::text("ok"),
        ("GET", "/") => with_session(sessions, request, index),
        ("GET", "/csrf") => with_session(sessions, request, csrf_token),
        ("POST", "/login") => with_session(sessions, request, |s| login(request, s)),
        ("POST", "/logout") => with_session(sessions, request, |s| logout(request, s)),
        ("GET", "/sessions") => with_session(sessions, request, |s| {
            list_sessions(sessions, s, request.get_param("after"))
        }),
        ("POST", "/sessions/revoke-others") => {
            with_session(sessions, request, |s| revoke_others(sessions, request, s))
        }
        _ => Response::text("not found\n").with_status_code(404),
    }
}

/// The demo's forgery check on every unsafe request: a browser's
/// cross-site request (`Sec-Fetch-Site: cross-site`, or an `Origin` that is
/// not this server) is refused with 403 before any session work; requests
/// without browser headers (curl, scripts) pass this check. A request that
/// sends a CSRF token (form field `csrf_token` or header `X-CSRF-Token`,
/// the value of `GET /csrf`) must send the session's own. An application
/// whose pages hold forms requires the token on every unsafe request:
/// `stored_session::adapters::rouille::check_csrf`.
fn cross_site(sessions: &Sessions, request: &Request) -> Option<Response> {
    sessions
        .csrf()
        .verify_origin(request.method(), |name| request.header(name))
        .err()
        .map(|rejection| {
            Response::text(format!("forbidden: {}\n", rejection.reason())).with_status_code(403)
        })
}

/// Checks a CSRF token when the request sends one (see [`cross_site`]).
fn token_check(
    request: &Request,
    session: &mut LazySession,
    form_token: Option<&str>,
) -> stored_session::Result<Option<Response>> {
    if form_token.is_none() && request.header("X-CSRF-Token").is_none() {
        return Ok(None);
    }
    stored_session::adapters::rouille::check_csrf(session, request, form_token)
}

/// The form field `csrf_token` of an urlencoded body, if any.
fn form_token(request: &Request) -> Option<String> {
    rouille::input::post::raw_urlencoded_post_input(request)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "csrf_token")
        .map(|(_, value)| value)
}

/// `/admin/…`: the login form, then the admin page for authorized requests.
fn admin_routes(demo: &Demo, request: &Request) -> Response {
    let Some(gate) = &demo.admin else {
        return Response::text("not found (the admin page is disabled: set ADMIN_TOKEN)\n")
            .with_status_code(404);
    };
    if request.url() == "/admin/login" {
        return match request.method() {
            "GET" => login_form(None, 200),
            "POST" => admin_login(gate, request),
            _ => Response::text("method not allowed\n").with_status_code(405),
        };
    }
    if gate.authorized(request) {
        return admin::rouille::handle(&gate.admin, request);
    }
    if request.method() == "GET" && request.header("Authorization").is_none() {
        return Response::redirect_303("/admin/login");
    }
    Response::text("unauthorized\n")
        .with_status_code(401)
        .with_unique_header("WWW-Authenticate", "Bearer")
}

fn admin_login(gate: &AdminGate, request: &Request) -> Response {
    let token = rouille::input::post::raw_urlencoded_post_input(request)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(name, _)| name == "token"))
        .map(|(_, value)| value);
    match token {
        Some(token) if gate.token_matches(&token) => Response::redirect_303("/admin/")
            .with_additional_header(
                "Set-Cookie",
                format!(
                    "{ADMIN_COOKIE}={}; Path=/admin; HttpOnly; SameSite=Strict",
                    gate.new_cookie_value()
                ),
            ),
        _ => login_form(Some("That is not the admin token."), 403),
    }
}

/// The admin sign-in form (HTML; every dynamic text escaped).
fn login_form(error: Option<&str>, status: u16) -> Response {
    let error = error
        .map(|e| format!("<p role=\"alert\">{}</p>", escape_html(e)))
        .unwrap_or_default();
    Response::html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Admin sign-in</title></head><body>\
         <h1>Admin sign-in</h1>{error}\
         <form method=\"post\" action=\"/admin/login\">\
         <label>Admin token <input type=\"password\" name=\"token\" required autofocus></label> \
         <button type=\"submit\">Sign in</button></form></body></html>\n"
    ))
    .with_status_code(status)
    .with_unique_header("Cache-Control", "no-store")
}

fn index(session: &mut LazySession) -> stored_session::Result<Response> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", &visits)?;
    let user = session
        .get::<String>("user")?
        .unwrap_or_else(|| "anonymous".into());
    let mut body = format!("visits: {visits}\nuser: {user}\n");
    // Set by the login for the next page, shown once.
    if let Some(flash) = session.take_flash::<String>("notice")? {
        body.push_str(&format!("flash: {flash}\n"));
    }
    Ok(Response::text(body))
}

/// `GET /csrf`: the session's CSRF token, for scripts that send it back
/// as `X-CSRF-Token` (or a form field `csrf_token`).
fn csrf_token(session: &mut LazySession) -> stored_session::Result<Response> {
    Ok(Response::text(format!("{}\n", session.csrf_token()?)))
}

fn login(request: &Request, session: &mut LazySession) -> stored_session::Result<Response> {
    let fields = rouille::input::post::raw_urlencoded_post_input(request).unwrap_or_default();
    let field = |wanted: &str| {
        fields
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.trim().to_owned())
    };
    if let Some(refused) = token_check(request, session, field("csrf_token").as_deref())? {
        return Ok(refused);
    }
    let user = field("user");
    let Some(user) = user.filter(|u| !u.is_empty() && u.len() <= 64) else {
        return Ok(
            Response::text("form field `user` (1 to 64 characters) required\n")
                .with_status_code(400),
        );
    };
    // New id on login: a cookie planted before login is worthless after it.
    session.renew();
    session.insert("user", &user)?;
    session.set_user(user.clone());
    session.set_expiry(config::login_expiry(field("remember").as_deref()));
    session.flash("notice", &format!("welcome {user}"))?;
    Ok(Response::text(format!("logged in as {user}")))
}

fn logout(request: &Request, session: &mut LazySession) -> stored_session::Result<Response> {
    if let Some(refused) = token_check(request, session, form_token(request).as_deref())? {
        return Ok(refused);
    }
    session.destroy();
    Ok(Response::text("logged out"))
}

fn not_signed_in() -> Response {
    Response::text("not signed in\n").with_status_code(401)
}

/// One line per live session of the signed-in user, 50 per page, newest
/// first; `after` is the cursor of the previous page's `next` line.
fn list_sessions(
    sessions: &Sessions,
    session: &mut LazySession,
    after: Option<String>,
) -> stored_session::Result<Response> {
    let session = session.load()?;
    let Some(user) = session.user_id() else {
        return Ok(not_signed_in());
    };
    let page = Page {
        limit: Page::DEFAULT_LIMIT,
        after: after.map(Cursor::new),
    };
    let listed = match sessions.store().sessions_of(user, Some(session), page) {
        Err(Error::InvalidCursor) => {
            return Ok(Response::text("invalid page cursor\n").with_status_code(400))
        }
        other => other?,
    };
    let mut body = String::new();
    for info in listed.sessions {
        body.push_str(&format!(
            "session {} created {} last-active {} ip {} agent {} device {} location {}{}\n",
            info.handle,
            info.created_at.to_rfc3339(),
            info.last_active.to_rfc3339(),
            info.ip.as_deref().unwrap_or("-"),
            info.user_agent.as_deref().unwrap_or("-"),
            info.device.as_deref().unwrap_or("-"),
            info.location.as_ref().map_or("-".into(), |l| l.to_string()),
            if info.current { " current" } else { "" },
        ));
    }
    if let Some(next) = listed.next {
        // Cursors are URL-safe base64: no escaping needed.
        body.push_str(&format!("next /sessions?after={next}\n"));
    }
    Ok(Response::text(body))
}

/// Ends every other session of the signed-in user.
fn revoke_others(
    sessions: &Sessions,
    request: &Request,
    session: &mut LazySession,
) -> stored_session::Result<Response> {
    if let Some(refused) = token_check(request, session, form_token(request).as_deref())? {
        return Ok(refused);
    }
    let session = session.load()?;
    if session.user_id().is_none() {
        return Ok(not_signed_in());
    }
    let revoked = sessions.store().revoke_others(session)?;
    Ok(Response::text(format!("revoked {revoked}")))
}
