//! Contender 1: stored-session, used exactly as an application would (blocking
//! calls from the request's thread; one OS thread per concurrent worker).

use stored_session::{CookieAction, Keyring, PoolOptions, Session, SessionId, SessionStore};

use crate::contender::{note, tokens, Contender, Op, Shape, USER_ID};
use crate::drive::{deal, drive_threads, Cell, Stop};

pub struct StoredSession {
    pub store: SessionStore,
    shape: Shape,
    note: String,
    tokens: [String; 2],
    /// Cookie values of the prepared sessions (for `Load`).
    pub cookies: Vec<String>,
    /// The prepared sessions, loaded, with the index of their current token
    /// and their cookie (for `Update` and `Pair`).
    sessions: Vec<(Session, usize, String)>,
    /// Sessions made by `Create`, for `Delete`.
    created: Vec<Session>,
}

impl StoredSession {
    /// Opens the store on `url` (its own r2d2 pool of at most 8 connections)
    /// and runs its migrations.
    pub fn open(url: &str) -> Self {
        // Measurement knob (not for reports): BENCH_NO_DEADLINE=1 opens the
        // store with `operation_timeout(None)`, to isolate what the
        // client-side deadline's worker hand-off costs.
        let mut pool = PoolOptions::default().max_size(8);
        if std::env::var_os("BENCH_NO_DEADLINE").is_some() {
            pool = pool.operation_timeout(None);
        }
        let store = SessionStore::builder(Keyring::generate())
            .pool(pool)
            .open_migrated(url)
            .expect("open stored-session");
        StoredSession {
            store,
            shape: Shape {
                note_len: 0,
                blob_len: 0,
            },
            note: String::new(),
            tokens: tokens(),
            cookies: Vec::new(),
            sessions: Vec::new(),
            created: Vec::new(),
        }
    }

    /// The stored id (SHA-256 of the cookie) of a prepared session.
    pub fn stored_id(&self, i: usize) -> [u8; 32] {
        *SessionId::parse(&self.cookies[i])
            .expect("a valid cookie")
            .stored_id()
            .as_bytes()
    }
}

/// Puts the benchmark values into a session.
fn fill(session: &mut Session, token: &str, note: &str) {
    session.insert("user_id", &USER_ID).expect("encode");
    session.insert("csrf", token).expect("encode");
    session.insert("note", note).expect("encode");
}

/// A new session with the benchmark values, committed; it keeps its record,
/// so it can be updated or destroyed without another load.
fn create(store: &SessionStore, token: &str, note: &str) -> (Session, String) {
    let mut session = store.load(None).expect("load");
    fill(&mut session, token, note);
    match store.save(&mut session).expect("commit") {
        CookieAction::Set(id, _) => (session, id.as_cookie_value().to_owned()),
        other => panic!("a new session should set a cookie, got {other:?}"),
    }
}

impl Contender for StoredSession {
    fn prepare(&mut self, n: usize, shape: Shape) {
        self.shape = shape;
        self.note = note(shape);
        self.cookies.clear();
        self.sessions.clear();
        for _ in 0..n {
            let (_, cookie) = create(&self.store, &self.tokens[0], &self.note);
            let session = self.store.load(Some(&cookie)).expect("load");
            assert!(!session.is_new(), "a prepared session must load");
            self.sessions.push((session, 0, cookie.clone()));
            self.cookies.push(cookie);
        }
    }

    fn run(&mut self, op: Op, workers: usize, stop: Stop) -> Cell {
        let store = &self.store;
        match op {
            Op::Load => {
                let cookies = &self.cookies;
                let n = cookies.len();
                let states: Vec<usize> = (0..workers).collect();
                drive_threads(states, stop, |w, i| {
                    let cookie = &cookies[(*w * n / workers + i) % n];
                    let session = store.load(Some(cookie)).expect("load");
                    assert!(!session.is_new(), "a prepared session must load");
                    true
                })
                .0
            }
            Op::Update => {
                let tokens = &self.tokens;
                let piles = deal(std::mem::take(&mut self.sessions), workers);
                let (cell, piles) = drive_threads(piles, stop, |pile, i| {
                    let k = i % pile.len();
                    let (session, token, _) = &mut pile[k];
                    *token ^= 1;
                    session.insert("csrf", &tokens[*token]).expect("encode");
                    assert_eq!(
                        store.save(session).expect("commit"),
                        CookieAction::Keep,
                        "an update must write in place"
                    );
                    true
                });
                self.sessions = piles.into_iter().flatten().collect();
                cell
            }
            Op::Pair => {
                // Each worker its own sessions (no write conflicts between
                // workers); the session loaded replaces the kept one, so
                // that `Update` goes on from the newest version.
                let tokens = &self.tokens;
                let piles = deal(std::mem::take(&mut self.sessions), workers);
                let (cell, piles) = drive_threads(piles, stop, |pile, i| {
                    let k = i % pile.len();
                    let (kept, token, cookie) = &mut pile[k];
                    let mut session = store.load(Some(cookie)).expect("load");
                    assert!(!session.is_new(), "a prepared session must load");
                    *token ^= 1;
                    session.insert("csrf", &tokens[*token]).expect("encode");
                    assert_eq!(
                        store.save(&mut session).expect("commit"),
                        CookieAction::Keep,
                        "an update must write in place"
                    );
                    *kept = session;
                    true
                });
                self.sessions = piles.into_iter().flatten().collect();
                cell
            }
            Op::Create => {
                let (token, note) = (&self.tokens[0], &self.note);
                let piles: Vec<Vec<Session>> = (0..workers).map(|_| Vec::new()).collect();
                let (cell, piles) = drive_threads(piles, stop, |made, _| {
                    made.push(create(store, token, note).0);
                    true
                });
                self.created.extend(piles.into_iter().flatten());
                cell
            }
            Op::Delete => {
                let piles = deal(std::mem::take(&mut self.created), workers);
                let (cell, piles) = drive_threads(piles, stop, |left, _| {
                    let Some(mut session) = left.pop() else {
                        return false;
                    };
                    session.destroy();
                    assert_eq!(
                        store.save(&mut session).expect("commit"),
                        CookieAction::Remove
                    );
                    true
                });
                self.created = piles.into_iter().flatten().collect();
                cell
            }
        }
    }
}
