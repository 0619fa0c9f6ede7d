//! End-to-end benchmarks (ns/op) of the store on a SQLite file in WAL mode,
//! with the ~1 KiB session of the side-by-side harness (a user id, a CSRF
//! token and a 900-byte string) among 1,000 live sessions:
//!
//! * `sqlite/load_1k`: `store.load(cookie)`: parse, hash, one SELECT, open, decode;
//! * `sqlite/commit_update_1k`: change the CSRF token and `store.commit`: encode,
//!   seal, one compare-and-swap UPDATE;
//! * `sqlite/commit_create_1k`: a new session with the three values and its
//!   first `commit`: encode, HKDF, seal, one INSERT.
//!
//! The comparison with a raw-Diesel floor and with tower-sessions-sqlx-store is
//! the separate harness in `benches/peers/`.
//!
//! Run: `cargo bench --bench sqlite`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;
use stored_session::{CookieAction, Keyring, Session, SessionId, SessionStore};

/// A database file that is removed (with its WAL files) when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("stored-session-bench-{}.db", std::process::id()));
        let db = TempDb(path);
        db.remove();
        db
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.0.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Fills a new session with the benchmark values.
fn fill(session: &mut Session) {
    session.insert("user_id", &4_242_424_242u64).unwrap();
    session
        .insert("csrf", SessionId::generate().as_cookie_value())
        .unwrap();
    session.insert("note", &"x".repeat(900)).unwrap();
}

/// Creates a stored session; its cookie value.
fn create(store: &SessionStore) -> String {
    let mut session = store.load(None).unwrap();
    fill(&mut session);
    match store.save(&mut session).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("expected a new cookie, got {other:?}"),
    }
}

fn main() {
    let db = TempDb::new();
    let store = SessionStore::builder(Keyring::generate())
        .open_migrated(&db.url())
        .unwrap();
    let cookies: Vec<String> = (0..1000).map(|_| create(&store)).collect();
    let tokens = [
        SessionId::generate().as_cookie_value().to_owned(),
        SessionId::generate().as_cookie_value().to_owned(),
    ];

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let mut next = 0usize;
    c.bench_function("sqlite/load_1k", |b| {
        b.iter(|| {
            next = (next + 1) % cookies.len();
            let session = store.load(Some(black_box(&cookies[next]))).unwrap();
            assert!(!session.is_new());
            session
        })
    });

    let mut session = store.load(Some(&cookies[0])).unwrap();
    let mut flip = 0usize;
    c.bench_function("sqlite/commit_update_1k", |b| {
        b.iter(|| {
            flip ^= 1;
            session.insert("csrf", &tokens[flip]).unwrap();
            assert_eq!(store.save(&mut session).unwrap(), CookieAction::Keep);
        })
    });

    c.bench_function("sqlite/commit_create_1k", |b| b.iter(|| create(&store)));

    c.final_summary();
    drop(store);
    drop(db);
}
