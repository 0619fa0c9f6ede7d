//! The demo application on Rocket 0.5: the same routes as `demo` (rouille).
//!
//! ```sh
//! cargo run --example rocket_demo --features rocket
//! ```
//!
//! * Listens on `127.0.0.1:$PORT` (default 8000).
//! * Stores sessions in `$DATABASE_URL` (default: the SQLite file
//!   `demo-sessions.db` in the working directory), migrated on start.
//! * Encrypts with the keys in `$STORED_SESSION_KEYS`, or with a key kept in
//!   the file `.stored-session-key` (created on the first run), so restarts
//!   keep sessions.
//! * Records client metadata: the IP address truncated to its /24 or /48
//!   network (the TCP peer's: no proxy is trusted) and the user agent.
//! * Serves plain HTTP, so the cookie's `Secure` flag is turned off (and it
//!   says so on start).
//! * With the `devices` feature, records a device label; with the `geoip`
//!   feature and `GEOIP_DB=/path/file.mmdb`, the client's country and city.
//!   `GET /sessions` lines include `device DEVICE location CITY, CC`.
//! * With `TRUST_PROXY=1`, takes the client's address from
//!   `X-Forwarded-For` sent by a proxy on 127.0.0.1 (never by default).
//!
//! Routes (text/plain): `GET /` counts visits (`visits: N`, `user: NAME` or
//! `anonymous`); `POST /login` with form field `user` (and optional
//! `remember`: `1` or `on`, for a 30-day idle window and a cookie with that
//! `Max-Age`; without it a browser-session cookie and a 2-hour idle
//! timeout) renews the session id and binds the session to the user
//! (`logged in as NAME`); `POST /logout`
//! destroys the session and removes the cookie (`logged out`);
//! `GET /sessions` lists the signed-in user's live sessions, newest first,
//! 50 per page, one line each starting with `session ` and the visitor's
//! own ending with ` current`, then `next /sessions?after=CURSOR` when there
//! are more (400 for a cursor that is not the user's);
//! `POST /sessions/revoke-others` ends the user's other sessions
//! (`revoked N`); `GET /health` answers `ok` without touching the session.
//! After a login, the next `GET /` shows `flash: welcome NAME` once.
//! `GET /csrf` answers the session's CSRF token. Every `POST` from a
//! browser on another site (`Sec-Fetch-Site: cross-site`, or a foreign
//! `Origin`) is refused with 403; requests without browser headers (curl)
//! pass; a request that sends a token (`X-CSRF-Token` or a form field
//! `csrf_token`) must send the session's own.
//! The admin page is in the rouille demo (`demo`).

use rocket::form::Form;
use rocket::http::Status;
use rocket::tokio::task::block_in_place;
use rocket::{get, post, routes, FromForm, State};
use stored_session::adapters::rocket::{CsrfCheck, SessionFairing, SessionGuard};
use stored_session::adapters::{CookiePolicy, Sessions, TrustedProxies};
use stored_session::csrf::CsrfRejection;
use stored_session::{Cursor, Error, Page, SessionStore};

#[path = "support/keys.rs"]
mod keys;
use keys::keyring;
#[path = "support/config.rs"]
pub mod config;
use config::demo_config;

#[get("/")]
fn index(session: SessionGuard<'_>) -> Result<String, Status> {
    let mut session = session.lock();
    let visits = session.get::<u64>("visits").map_err(internal)?.unwrap_or(0) + 1;
    session.insert("visits", &visits).map_err(internal)?;
    let user = session
        .get::<String>("user")
        .map_err(internal)?
        .unwrap_or_else(|| "anonymous".into());
    let mut body = format!("visits: {visits}\nuser: {user}\n");
    // Set by the login for the next page, shown once.
    if let Some(flash) = session.take_flash::<String>("notice").map_err(internal)? {
        body.push_str(&format!("flash: {flash}\n"));
    }
    Ok(body)
}

/// `GET /csrf`: the session's CSRF token, for scripts that send it back as
/// `X-CSRF-Token` (or a form field `csrf_token`).
#[get("/csrf")]
fn csrf_token(session: SessionGuard<'_>) -> String {
    format!("{}\n", session.csrf_token())
}

/// Why an unsafe request was not served.
#[derive(rocket::Responder)]
enum Refused {
    /// A forgery check failed: 403.
    Forgery(CsrfRejection),
    /// Anything else.
    Status(Status),
}

impl From<Status> for Refused {
    fn from(status: Status) -> Self {
        Refused::Status(status)
    }
}

impl From<CsrfRejection> for Refused {
    fn from(rejection: CsrfRejection) -> Self {
        Refused::Forgery(rejection)
    }
}

/// The demo's forgery check on every unsafe request: a browser's
/// cross-site request (`Sec-Fetch-Site: cross-site`, or a foreign
/// `Origin`) is refused with 403; requests without browser headers (curl)
/// pass. A request that sends a CSRF token must send the session's own. An
/// application whose pages hold forms requires the token on every unsafe
/// request (`CsrfCheck::verify` alone).
fn forgery_check(
    csrf: &CsrfCheck,
    session: &SessionGuard<'_>,
    form_token: Option<&str>,
) -> Result<(), CsrfRejection> {
    csrf.verify_origin()?;
    if form_token.is_some() || csrf.carries_token() {
        csrf.verify(session, form_token)?;
    }
    Ok(())
}

#[derive(FromForm)]
struct Login {
    #[field(validate = len(1..=64))]
    user: String,
    remember: Option<String>,
    csrf_token: Option<String>,
}

#[post("/login", data = "<form>")]
fn login(csrf: CsrfCheck, session: SessionGuard<'_>, form: Form<Login>) -> Result<String, Refused> {
    let form = form.into_inner();
    forgery_check(&csrf, &session, form.csrf_token.as_deref())?;
    let user = form.user;
    let mut session = session.lock();
    // New id on login: a cookie planted before login is worthless after it.
    session.renew();
    session.insert("user", &user).map_err(internal)?;
    session.set_user(user.clone());
    session.set_expiry(config::login_expiry(form.remember.as_deref()));
    session
        .flash("notice", &format!("welcome {user}"))
        .map_err(internal)?;
    Ok(format!("logged in as {user}"))
}

#[derive(FromForm)]
struct Token {
    csrf_token: Option<String>,
}

#[post("/logout", data = "<form>")]
fn logout(
    csrf: CsrfCheck,
    session: SessionGuard<'_>,
    form: Option<Form<Token>>,
) -> Result<&'static str, Refused> {
    forgery_check(
        &csrf,
        &session,
        form.as_ref().and_then(|f| f.csrf_token.as_deref()),
    )?;
    session.destroy();
    Ok("logged out")
}

/// The signed-in user's live sessions, one line each, 50 per page. The
/// store blocks, so the query runs in `block_in_place` (off the async
/// scheduler's hot path).
#[get("/sessions?<after>")]
fn sessions(
    session: SessionGuard<'_>,
    store: &State<SessionStore>,
    after: Option<String>,
) -> Result<String, Status> {
    let session = session.lock();
    let Some(user) = session.user_id() else {
        return Err(Status::Unauthorized);
    };
    let page = Page {
        limit: Page::DEFAULT_LIMIT,
        after: after.map(Cursor::new),
    };
    let listed = match block_in_place(|| store.sessions_of(user, Some(&session), page)) {
        Err(Error::InvalidCursor) => return Err(Status::BadRequest),
        other => other.map_err(internal)?,
    };
    let mut body: String = listed
        .sessions
        .iter()
        .map(|info| {
            format!(
                "session {} created {} last-active {} ip {} agent {} device {} location {}{}\n",
                info.handle,
                info.created_at.to_rfc3339(),
                info.last_active.to_rfc3339(),
                info.ip.as_deref().unwrap_or("-"),
                info.user_agent.as_deref().unwrap_or("-"),
                info.device.as_deref().unwrap_or("-"),
                info.location.as_ref().map_or("-".into(), |l| l.to_string()),
                if info.current { " current" } else { "" },
            )
        })
        .collect();
    if let Some(next) = listed.next {
        // Cursors are URL-safe base64: no escaping needed.
        body.push_str(&format!("next /sessions?after={next}\n"));
    }
    Ok(body)
}

/// Ends the signed-in user's other sessions.
#[post("/sessions/revoke-others", data = "<form>")]
fn revoke_others(
    csrf: CsrfCheck,
    session: SessionGuard<'_>,
    form: Option<Form<Token>>,
    store: &State<SessionStore>,
) -> Result<String, Refused> {
    forgery_check(
        &csrf,
        &session,
        form.as_ref().and_then(|f| f.csrf_token.as_deref()),
    )?;
    let session = session.lock();
    if session.user_id().is_none() {
        return Err(Status::Unauthorized.into());
    }
    let revoked = block_in_place(|| store.revoke_others(&session)).map_err(internal)?;
    Ok(format!("revoked {revoked}"))
}

#[get("/health")]
fn health() -> &'static str {
    "ok"
}

fn internal(error: stored_session::Error) -> Status {
    eprintln!("session error: {error}");
    Status::InternalServerError
}

/// The demo's routes on `sessions` (the tests serve this too).
pub fn app(sessions: Sessions) -> rocket::Rocket<rocket::Build> {
    rocket::build().attach(SessionFairing::new(sessions)).mount(
        "/",
        routes![
            index,
            csrf_token,
            login,
            logout,
            sessions,
            revoke_others,
            health
        ],
    )
}

#[rocket::main]
async fn main() {
    if let Err(message) = run().await {
        eprintln!("rocket_demo: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let port = match std::env::var("PORT") {
        Ok(p) => p
            .parse::<u16>()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        Err(_) => 8000,
    };
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://demo-sessions.db".into());
    let keyring = keyring()?;
    // Opening and migrating block: do it off the async workers.
    let config = demo_config()?;
    let store = rocket::tokio::task::spawn_blocking(move || {
        SessionStore::builder(keyring)
            .config(config)
            .open_migrated(&url)
    })
    .await
    .map_err(|e| format!("start-up task failed: {e}"))?
    .map_err(|e| format!("cannot open the session database: {e}"))?;
    // Plain HTTP: a Secure cookie would not come back from most browsers.
    let sessions = Sessions::with_policy(store, CookiePolicy::new().with_secure(false))
        .map_err(|e| format!("cookie policy: {e}"))?;
    // TRUST_PROXY=1: a reverse proxy on this machine forwards the client's
    // address in X-Forwarded-For; believe it from 127.0.0.1 only.
    let sessions = if std::env::var("TRUST_PROXY").is_ok_and(|v| v == "1") {
        println!("TRUST_PROXY=1: the client address comes from X-Forwarded-For sent by 127.0.0.1");
        sessions
            .with_trusted_proxies(TrustedProxies::new().with("127.0.0.1"))
            .map_err(|e| format!("trusted proxies: {e}"))?
    } else {
        sessions
    };
    println!(
        "note: plain HTTP, so the session cookie's Secure flag is OFF; keep it on in production"
    );

    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", port));
    app(sessions)
        .configure(figment)
        .launch()
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    Ok(())
}
