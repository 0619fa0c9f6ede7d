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
//!
//! Routes (text/plain): `GET /` counts visits (`visits: N`, `user: NAME` or
//! `anonymous`); `POST /login` with form field `user` renews the session id
//! and binds the session to the user (`logged in as NAME`); `POST /logout`
//! destroys the session and removes the cookie (`logged out`);
//! `GET /sessions` lists the signed-in user's live sessions, newest first,
//! 50 per page, one line each starting with `session ` and the visitor's
//! own ending with ` current`, then `next /sessions?after=CURSOR` when there
//! are more (400 for a cursor that is not the user's);
//! `POST /sessions/revoke-others` ends the user's other sessions
//! (`revoked N`); `GET /health` answers `ok` without touching the session.
//! The admin page is in the rouille demo (`demo`).

use rocket::form::Form;
use rocket::http::Status;
use rocket::tokio::task::block_in_place;
use rocket::{get, post, routes, FromForm, State};
use stored_session::adapters::rocket::{SessionFairing, SessionGuard};
use stored_session::adapters::{CookiePolicy, Sessions};
use stored_session::{Config, Cursor, Error, IpTracking, MetadataPolicy, Page, SessionStore};

#[path = "support/keys.rs"]
mod keys;
use keys::keyring;

#[get("/")]
fn index(session: SessionGuard<'_>) -> Result<String, Status> {
    let mut session = session.lock();
    let visits = session.get::<u64>("visits").map_err(internal)?.unwrap_or(0) + 1;
    session.insert("visits", &visits).map_err(internal)?;
    let user = session
        .get::<String>("user")
        .map_err(internal)?
        .unwrap_or_else(|| "anonymous".into());
    Ok(format!("visits: {visits}\nuser: {user}\n"))
}

#[derive(FromForm)]
struct Login {
    #[field(validate = len(1..=64))]
    user: String,
}

#[post("/login", data = "<form>")]
fn login(session: SessionGuard<'_>, form: Form<Login>) -> Result<String, Status> {
    let user = form.into_inner().user;
    let mut session = session.lock();
    // New id on login: a cookie planted before login is worthless after it.
    session.renew();
    session.insert("user", &user).map_err(internal)?;
    session.set_user(user.clone());
    Ok(format!("logged in as {user}"))
}

#[post("/logout")]
fn logout(session: SessionGuard<'_>) -> &'static str {
    session.destroy();
    "logged out"
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
                "session {} created {} last-active {} ip {} agent {}{}\n",
                info.handle,
                info.created_at.to_rfc3339(),
                info.last_active.to_rfc3339(),
                info.ip.as_deref().unwrap_or("-"),
                info.user_agent.as_deref().unwrap_or("-"),
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
#[post("/sessions/revoke-others")]
fn revoke_others(session: SessionGuard<'_>, store: &State<SessionStore>) -> Result<String, Status> {
    let session = session.lock();
    if session.user_id().is_none() {
        return Err(Status::Unauthorized);
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
    let metadata = MetadataPolicy {
        ip: IpTracking::Truncated,
        user_agent: true,
    };
    let store = rocket::tokio::task::spawn_blocking(move || {
        SessionStore::builder(keyring)
            .config(Config::default().metadata(metadata))
            .open_migrated(&url)
    })
    .await
    .map_err(|e| format!("start-up task failed: {e}"))?
    .map_err(|e| format!("cannot open the session database: {e}"))?;
    // Plain HTTP: a Secure cookie would not come back from most browsers.
    let sessions = Sessions::with_policy(store, CookiePolicy::new().with_secure(false))
        .map_err(|e| format!("cookie policy: {e}"))?;
    println!(
        "note: plain HTTP, so the session cookie's Secure flag is OFF; keep it on in production"
    );

    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", port));
    rocket::custom(figment)
        .attach(SessionFairing::new(sessions))
        .mount(
            "/",
            routes![index, login, logout, sessions, revoke_others, health],
        )
        .launch()
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    Ok(())
}
