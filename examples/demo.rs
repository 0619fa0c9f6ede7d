//! The demo application: sessions on a rouille server.
//!
//! ```sh
//! cargo run --example demo --features rouille
//! ```
//!
//! * Listens on `127.0.0.1:$PORT` (default 8000).
//! * Stores sessions in `$DATABASE_URL` (default: the SQLite file
//!   `demo-sessions.db` in the working directory), migrated on start.
//! * Encrypts with the keys in `$STORED_SESSION_KEYS`, or with a key kept in
//!   the file `.stored-session-key` (created on the first run), so restarts
//!   keep sessions.
//! * Serves plain HTTP, so the cookie's `Secure` flag is turned off (and it
//!   says so on start).
//!
//! Routes (text/plain):
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | counts visits in the session: `visits: N` and `user: NAME` (or `anonymous`) |
//! | `POST /login` (form field `user`) | renews the session id, stores the user: `logged in as NAME` |
//! | `POST /logout` | destroys the session and removes the cookie: `logged out` |
//! | `GET /health` | `ok`, never touches the session |
//!
//! Try it with curl and a cookie jar:
//!
//! ```sh
//! curl -c jar -b jar http://127.0.0.1:8000/
//! curl -c jar -b jar -d user=alice http://127.0.0.1:8000/login
//! curl -c jar -b jar http://127.0.0.1:8000/
//! curl -c jar -b jar -X POST http://127.0.0.1:8000/logout
//! ```

use rouille::{router, Request, Response};
use stored_session::adapters::rouille::with_session;
use stored_session::adapters::{CookiePolicy, LazySession, Sessions};
use stored_session::{Key, Keyring, SessionStore};

/// Where the demo keeps its key when `STORED_SESSION_KEYS` is not set.
const KEY_FILE: &str = ".stored-session-key";

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
        .open_migrated(&url)
        .map_err(|e| format!("cannot open the session database: {e}"))?;
    // Plain HTTP: a Secure cookie would not come back from most browsers.
    let policy = CookiePolicy::new().secure(false);
    let sessions =
        Sessions::with_policy(store, policy).map_err(|e| format!("cookie policy: {e}"))?;

    let addr = format!("127.0.0.1:{port}");
    let server = rouille::Server::new(&addr, move |request| app(&sessions, request))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("stored-session demo on http://{}/", server.server_addr());
    println!("sessions in {}", redact(&url));
    println!(
        "note: plain HTTP, so the session cookie's Secure flag is OFF; keep it on in production"
    );
    server.run();
    Ok(())
}

/// The keys from `STORED_SESSION_KEYS`, or the key file (created once).
fn keyring() -> Result<Keyring, String> {
    if std::env::var_os("STORED_SESSION_KEYS").is_some() {
        println!("keys from STORED_SESSION_KEYS");
        return Keyring::from_env().map_err(|e| format!("STORED_SESSION_KEYS: {e}"));
    }
    match std::fs::read_to_string(KEY_FILE) {
        Ok(text) => {
            println!("key from {KEY_FILE}");
            Keyring::parse(&text).map_err(|e| format!("{KEY_FILE}: {e}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::generate();
            write_key_file(key.to_base64().as_str())?;
            println!("generated a key in {KEY_FILE} (keep it secret; sessions need it)");
            Ok(Keyring::new(key))
        }
        Err(e) => Err(format!("cannot read {KEY_FILE}: {e}")),
    }
}

fn write_key_file(key: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(KEY_FILE)
        .map_err(|e| format!("cannot create {KEY_FILE}: {e}"))?;
    writeln!(file, "{key}").map_err(|e| format!("cannot write {KEY_FILE}: {e}"))
}

/// The database URL without a password, for the start-up message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn app(sessions: &Sessions, request: &Request) -> Response {
    router!(request,
        (GET) (/health) => { Response::text("ok") },
        (GET) (/) => { with_session(sessions, request, index) },
        (POST) (/login) => { with_session(sessions, request, |s| login(request, s)) },
        (POST) (/logout) => { with_session(sessions, request, logout) },
        _ => Response::text("not found\n").with_status_code(404)
    )
}

fn index(session: &mut LazySession) -> stored_session::Result<Response> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", &visits)?;
    let user = session
        .get::<String>("user")?
        .unwrap_or_else(|| "anonymous".into());
    Ok(Response::text(format!("visits: {visits}\nuser: {user}\n")))
}

fn login(request: &Request, session: &mut LazySession) -> stored_session::Result<Response> {
    let user = match rouille::input::post::raw_urlencoded_post_input(request) {
        Ok(fields) => fields
            .into_iter()
            .find(|(name, _)| name == "user")
            .map(|(_, value)| value.trim().to_owned()),
        Err(_) => None,
    };
    let Some(user) = user.filter(|u| !u.is_empty() && u.len() <= 64) else {
        return Ok(
            Response::text("form field `user` (1 to 64 characters) required\n")
                .with_status_code(400),
        );
    };
    let session = session.load()?;
    // New id on login: a cookie planted before login is worthless after it.
    session.renew();
    session.insert("user", &user)?;
    session.set_user(user.clone());
    Ok(Response::text(format!("logged in as {user}")))
}

fn logout(session: &mut LazySession) -> stored_session::Result<Response> {
    session.destroy()?;
    Ok(Response::text("logged out"))
}
