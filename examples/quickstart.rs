//! The whole request cycle without a web framework: load a session from a
//! cookie value, change it, commit, and act on the cookie the commit asks for.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Uses a SQLite file `quickstart.db` in the working directory (set
//! `DATABASE_URL` to use another database) and a throw-away key.

use stored_session::{CookieAction, Keyring, SessionStore};

fn main() -> Result<(), stored_session::Error> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://quickstart.db".into());
    let store = SessionStore::builder(Keyring::generate()).open_migrated(&url)?;

    // Request 1: a visitor without a cookie. Nothing is stored until the
    // session holds data.
    let mut session = store.load(None)?;
    session.insert("visits", &1u32)?;
    let cookie = match store.save(&mut session)? {
        CookieAction::Set(id, _) => id,
        other => panic!("a new session sets a cookie, got {other:?}"),
    };
    println!(
        "request 1: Set-Cookie id=<43 random characters> (stored as {})",
        cookie.stored_id()
    );

    // Request 2: the browser sends the cookie back.
    let mut session = store.load(Some(cookie.as_cookie_value()))?;
    let visits: u32 = session.get("visits")?.unwrap_or(0) + 1;
    session.insert("visits", &visits)?;
    assert_eq!(store.save(&mut session)?, CookieAction::Keep);
    println!("request 2: visits = {visits}, no cookie change");

    // Request 3: login. Renew the id so a planted cookie cannot ride along.
    let mut session = store.load(Some(cookie.as_cookie_value()))?;
    session.insert("user", "alice")?;
    session.renew();
    let renewed = match store.save(&mut session)? {
        CookieAction::Set(id, _) => id,
        other => panic!("renew sets a new cookie, got {other:?}"),
    };
    assert!(store.load(Some(cookie.as_cookie_value()))?.is_new());
    println!("request 3: logged in as alice, id renewed, the old id no longer works");

    // Request 4: logout.
    let mut session = store.load(Some(renewed.as_cookie_value()))?;
    session.destroy();
    assert_eq!(store.save(&mut session)?, CookieAction::Remove);
    println!("request 4: logged out, cookie removed, row deleted");
    Ok(())
}
