//! Opening a database that cannot be reached or opened fails at once with
//! `Error::Connection`, naming the database (the URL with `***` only where
//! it had a password, or the SQLite path) and the driver's reason; and an
//! error returned from `main` prints as a readable line.
//!
//! SQLite always; the refused-port cases need only the backend's feature;
//! the cases against a live server need `TEST_POSTGRES_URL` /
//! `TEST_MYSQL_URL` (skipped with a note without them, except under
//! `CI=true`).

use std::time::{Duration, Instant};

use stored_session::{Backend, Database, Error, Keyring, PoolOptions, SessionStore};

/// Far longer than any failure may take: the acquire timeout a slow
/// failure would have waited for.
const ACQUIRE: Duration = Duration::from_secs(5);
/// How long a failed open may take.
const FAST: Duration = Duration::from_secs(2);

fn options() -> PoolOptions {
    PoolOptions::default().acquire_timeout(ACQUIRE)
}

/// Opens `url` both ways (a bare `Database` and a store), expects
/// `Error::Connection` from each well within the acquire timeout, and
/// returns its text after the checks every case shares.
fn refused(url: &str, backend: Backend) -> String {
    let started = Instant::now();
    let err = Database::open(url, &options()).expect_err(url);
    let took = started.elapsed();
    assert!(
        took < FAST,
        "{url}: failed after {took:?}, not at once: {err}"
    );
    let Error::Connection {
        backend: reported,
        target,
        message,
    } = &err
    else {
        panic!("{url}: expected Error::Connection, got {err:#?}");
    };
    assert_eq!(*reported, backend, "{url}");
    let text = err.to_string();
    assert!(text.contains(target.as_str()) && text.ends_with(message.as_str()));
    assert!(!text.contains('\n'), "one line: {text:?}");
    assert!(!message.is_empty(), "{url}: no reason given: {text}");
    // `main() -> Result` and `expect` print Debug: the same line.
    assert_eq!(format!("{err:?}"), text);

    let started = Instant::now();
    let store = SessionStore::builder(Keyring::generate())
        .pool(options())
        .open(url);
    let took = started.elapsed();
    match store {
        Err(e @ Error::Connection { .. }) => assert_eq!(e.to_string(), text),
        Err(e) => panic!("{url}: StoreBuilder::open: expected Error::Connection, got {e:#?}"),
        Ok(_) => panic!("{url}: StoreBuilder::open succeeded"),
    }
    assert!(
        took < FAST,
        "{url}: StoreBuilder::open failed after {took:?}"
    );
    text
}

/// The password parts of a URL never show; `***` stands where one was.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn assert_masked(text: &str, secret: &str) {
    assert!(!text.contains(secret), "the password leaked: {text}");
    assert!(
        text.contains(":***@"),
        "no *** where the password was: {text}"
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join("stored-session-tests");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{name}-{}", std::process::id()))
    }

    #[test]
    fn a_missing_directory_names_the_file_and_the_directory() {
        let dir = scratch("no-such-dir");
        let path = dir.join("typo.db");
        let shown = path.display().to_string();
        for url in [shown.clone(), format!("sqlite://{shown}")] {
            let text = refused(&url, Backend::Sqlite);
            assert!(
                text.starts_with(&format!("could not open the SQLite database at {shown}: ")),
                "{text}"
            );
            assert!(
                text.to_lowercase()
                    .contains("unable to open the database file"),
                "{text}"
            );
            assert!(
                text.ends_with(&format!("(the directory {} does not exist)", dir.display())),
                "{text}"
            );
            assert!(!text.contains("***"), "{text}");
        }
        assert!(!dir.exists());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named() {
        let path = scratch("not-a-database.db");
        std::fs::write(&path, "this is a text file, not a database\n".repeat(200)).unwrap();
        let shown = path.display().to_string();
        let text = refused(&format!("sqlite://{shown}"), Backend::Sqlite);
        let _ = std::fs::remove_file(&path);
        assert!(
            text.starts_with(&format!("could not open the SQLite database at {shown}: ")),
            "{text}"
        );
        assert!(text.contains("not a database"), "{text}");
    }

    #[test]
    fn a_directory_is_not_a_database_file() {
        let dir = scratch("a-directory");
        std::fs::create_dir_all(&dir).unwrap();
        let text = refused(&dir.display().to_string(), Backend::Sqlite);
        let _ = std::fs::remove_dir(&dir);
        assert!(text.ends_with("(it is a directory)"), "{text}");
    }

    #[test]
    fn a_good_file_still_opens() {
        let path = scratch("fine.db");
        let db = Database::open(&path.display().to_string(), &options()).unwrap();
        db.run_migrations().unwrap();
        drop(db);
        let _ = std::fs::remove_file(&path);
    }
}

/// The server URL in `var`, or `None` (skip, with a note) when it is not
/// set outside CI.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} must be set when CI=true")
        }
        _ => {
            eprintln!("note: {var} is not set; skipping the live-server cases");
            None
        }
    }
}

/// `url` with its user info replaced by `userinfo` and its database (the
/// path) by `database`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn rewrite(url: &str, userinfo: Option<&str>, database: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").expect("a server URL");
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let user = authority.rsplit_once('@').map(|(u, _)| u);
    let (path, query) = tail.split_at(tail.find('?').unwrap_or(tail.len()));
    let user = match userinfo {
        Some(u) => format!("{u}@"),
        None => user.map(|u| format!("{u}@")).unwrap_or_default(),
    };
    let path = match database {
        Some(d) => format!("/{d}"),
        None => path.to_owned(),
    };
    format!("{scheme}://{user}{host}{path}{query}")
}

/// The user name of a server URL.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn user_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@').map_or("", |(u, _)| u);
    userinfo.split(':').next().unwrap_or("").to_owned()
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
const SECRET: &str = "s3cret-Pw-9f2c";

/// Each way a server connection fails, on one backend: a refused port
/// (no server needed), then, against the live server, an unknown
/// database, an unknown role and a wrong password.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn server_cases(scheme: &str, var: &str, backend: Backend, what: &str) {
    let prefix = format!("could not connect to {what} at ");

    // A refused connection, with and without a password.
    let url = format!("{scheme}://app:{SECRET}@127.0.0.1:1/sessions");
    let text = refused(&url, backend);
    assert!(
        text.starts_with(&format!(
            "{prefix}{scheme}://app:***@127.0.0.1:1/sessions: "
        )),
        "{text}"
    );
    assert_masked(&text, SECRET);
    assert!(text.to_lowercase().contains("refused"), "{text}");
    let url = format!("{scheme}://app@127.0.0.1:1/sessions");
    let text = refused(&url, backend);
    assert!(text.starts_with(&format!("{prefix}{url}: ")), "{text}");
    assert!(!text.contains("***"), "*** without a password: {text}");

    let Some(server) = server(var) else { return };

    // An unknown database: the URL as given (no password in it, or ***).
    let url = rewrite(&server, None, Some("ss_no_such_database"));
    let text = refused(&url, backend);
    assert!(
        text.starts_with(&format!("{prefix}{}: ", stored_session::redact_url(&url))),
        "{text}"
    );
    assert!(text.contains("ss_no_such_database"), "{text}");
    assert_eq!(
        text.contains("***"),
        stored_session::redact_url(&url) != url,
        "*** only where there was a password: {text}"
    );

    // An unknown role, with a password.
    let url = rewrite(&server, Some(&format!("ss_no_such_role:{SECRET}")), None);
    let text = refused(&url, backend);
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.contains("ss_no_such_role"), "{text}");
    assert_masked(&text, SECRET);

    // A wrong password for the server's own user, unless the server trusts
    // every connection from here (then any password is right).
    let user = user_of(&server);
    let url = rewrite(&server, Some(&format!("{user}:{SECRET}")), None);
    match Database::open(&url, &options()) {
        Ok(_) => eprintln!(
            "note: {var}'s server accepts any password for {user} (trust): \
             skipping the wrong-password case"
        ),
        Err(_) => {
            let text = refused(&url, backend);
            assert!(text.starts_with(&prefix), "{text}");
            assert_masked(&text, SECRET);
            let lower = text.to_lowercase();
            assert!(
                lower.contains("password") || lower.contains("access denied"),
                "{text}"
            );
        }
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_connection_errors_say_why() {
    server_cases(
        "postgres",
        "TEST_POSTGRES_URL",
        Backend::Postgres,
        "PostgreSQL",
    );
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_connection_errors_say_why() {
    server_cases("mysql", "TEST_MYSQL_URL", Backend::Mysql, "MySQL");
    // The mariadb:// spelling is shown as given.
    let url = format!("mariadb://app:{SECRET}@127.0.0.1:1/sessions");
    let text = refused(&url, Backend::Mysql);
    assert!(
        text.starts_with("could not connect to MySQL at mariadb://app:***@127.0.0.1:1/sessions: "),
        "{text}"
    );
}

/// A server that accepts the TCP connection and then never answers: the
/// first connection gives up after the connect timeout, not the acquire
/// timeout, and says so.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn silent_server(scheme: &str, connect: Duration, within: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("{scheme}://app:{SECRET}@127.0.0.1:{port}/sessions");
    let options = PoolOptions::default()
        .acquire_timeout(Duration::from_secs(20))
        .connect_timeout(connect);
    let started = Instant::now();
    let err = Database::open(&url, &options).expect_err("a silent server");
    let took = started.elapsed();
    // Closing the listener resets the pending connection, so the driver
    // gives up on its helper thread too.
    drop(listener);
    std::thread::sleep(Duration::from_millis(200));
    assert!(matches!(err, Error::Connection { .. }), "{err:#?}");
    assert!(took < within, "gave up after {took:?}: {err}");
    let text = err.to_string();
    assert_masked(&text, SECRET);
    text
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_silent_server_ends_at_the_connect_timeout() {
    // libpq's connect_timeout is whole seconds, at least 2.
    let text = silent_server("postgres", Duration::from_secs(2), Duration::from_secs(4));
    assert!(text.to_lowercase().contains("timeout"), "{text}");
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_silent_server_ends_at_the_connect_timeout() {
    let text = silent_server("mysql", Duration::from_millis(300), Duration::from_secs(2));
    assert!(
        text.ends_with("no answer within the connect timeout (300ms)"),
        "{text}"
    );
}

/// What `fn main() -> Result<(), stored_session::Error>` prints when `?`
/// returns an error: the standard library's `Termination` writes
/// `Error: {err:?}` to stderr. This test runs itself as a child process in
/// which it fails that way, without `STORED_SESSION_KEYS`, and reads what
/// the child printed.
#[test]
fn main_returning_an_error_prints_a_readable_line() -> Result<(), Error> {
    const PROBE: &str = "STORED_SESSION_TEST_MAIN_PROBE";
    if std::env::var_os(PROBE).is_some() {
        let _keys = Keyring::from_env()?;
        return Ok(());
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "main_returning_an_error_prints_a_readable_line",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE, "1")
        .env_remove("STORED_SESSION_KEYS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the probe should fail: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no `Error: ` line in {stderr}"));
    assert_eq!(
        line,
        "Error: configuration error: STORED_SESSION_KEYS is not set: make a key with \
         `stored-session keygen` (or `openssl rand -base64 32`) and set STORED_SESSION_KEYS to it"
    );
    Ok(())
}
