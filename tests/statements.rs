//! Every SQL statement the store sends, per backend, kept in
//! `docs/sql/<backend>.sql` and checked here.
//!
//! Diesel's instrumentation (`set_default_instrumentation`) reports every
//! statement each new connection runs; the connections of this test's own
//! database (named by its unique name in the URL) report to its recorder,
//! which labels them with the operation the test is running. The test runs
//! every public operation of the store once or more, on every branch that
//! sends other SQL (fast paths and the locked slow paths after a write
//! conflict, renew with and without a user, each trimming rule, key
//! rotation…), normalises what was sent and compares it with the file.
//!
//! A statement the store sends that the file does not list, or one the
//! file lists that is no longer sent, fails the test with the difference.
//! `UPDATE_SQL_DOCS=1 cargo test --all-features --test statements` (with
//! `TEST_POSTGRES_URL` and `TEST_MYSQL_URL` set) rewrites the files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;

use common::Harness;
use diesel::connection::{set_default_instrumentation, Instrumentation, InstrumentationEvent};
use stored_session::{
    rotate_keys, trim_inactive, Backend, CookieAction, Expiry, Key, Keyring, Page, Session,
    SessionStore, Trim, Trimmer,
};

/// The label of statements a connection runs right after it is
/// established, whatever operation made the pool open it.
const CONNECTION_SETUP: &str = "connection setup (every new connection)";

/// Statements the test itself sends (raw rows for trimming): not listed.
const TEST_ONLY: &str = "";

/// What one test's database sent: (operation, raw SQL) in order.
#[derive(Default)]
struct Recorder {
    operation: Mutex<String>,
    sent: Mutex<Vec<(String, String)>>,
    /// Every operation run, in order (also those that sent nothing).
    operations: Mutex<Vec<String>>,
}

impl Recorder {
    /// Labels what is sent from now on with `operation`.
    fn op(&self, operation: &str) {
        *self.operation.lock().unwrap() = operation.to_owned();
        if !operation.is_empty() {
            let mut ops = self.operations.lock().unwrap();
            if !ops.iter().any(|o| o == operation) {
                ops.push(operation.to_owned());
            }
        }
    }

    /// Runs `f` with what it sends labelled `operation`, then goes back to
    /// the current label (the scenario's own loads and creations are
    /// listed as loads and creations).
    fn within<T>(&self, operation: &str, f: impl FnOnce() -> T) -> T {
        let previous = self.operation.lock().unwrap().clone();
        self.op(operation);
        let out = f();
        *self.operation.lock().unwrap() = previous;
        out
    }

    fn record(&self, setup: bool, sql: String) {
        let label = if setup {
            CONNECTION_SETUP.to_owned()
        } else {
            self.operation.lock().unwrap().clone()
        };
        self.sent.lock().unwrap().push((label, sql));
    }
}

/// Recorders by the unique database name in their URL.
static RECORDERS: Mutex<Vec<(String, Weak<Recorder>)>> = Mutex::new(Vec::new());

/// One connection's instrumentation: finds its recorder when the
/// connection is established, then reports each statement.
#[derive(Default)]
struct ConnectionProbe {
    recorder: Option<Arc<Recorder>>,
    /// The thread that established the connection. The pool's setup
    /// (`CustomizeConnection`) runs there, right after; r2d2 opens
    /// connections on its own threads (and `open`'s first connection,
    /// made only to fail fast, is dropped after its setup), so nothing
    /// else runs on that thread.
    established_on: Option<std::thread::ThreadId>,
}

impl Instrumentation for ConnectionProbe {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } => {
                self.recorder = RECORDERS
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(name, _)| url.contains(name.as_str()))
                    .and_then(|(_, recorder)| recorder.upgrade());
                self.established_on = Some(std::thread::current().id());
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                if let Some(recorder) = &self.recorder {
                    let mut sql = String::new();
                    write!(sql, "{query}").expect("a statement Diesel can display");
                    let setup = self.established_on == Some(std::thread::current().id());
                    recorder.record(setup, sql);
                }
            }
            _ => {}
        }
    }
}

fn probe() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(ConnectionProbe::default()))
}

/// A recorder for the harness's database (found by its unique name).
fn recorder_for(h: &Harness) -> Arc<Recorder> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| set_default_instrumentation(probe).expect("install instrumentation"));
    let start = h.url.find("ss_test_").expect("a harness database name");
    let name = h.url[start..start + 24].to_owned();
    let recorder = Arc::new(Recorder::default());
    RECORDERS
        .lock()
        .unwrap()
        .push((name, Arc::downgrade(&recorder)));
    recorder
}

/// The statements of one SQL text as the file lists them: comments
/// (including Diesel's `-- binds: […]`) removed, split at `;`, whitespace
/// collapsed, and a list of placeholders in `IN (…)` written `IN (?, ...)`
/// (its length is the number of values, not part of the statement).
fn normalise(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            '-' if !quoted && chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                current.push(' ');
            }
            ';' if !quoted => statements.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    statements.push(current);
    statements
        .into_iter()
        .map(|s| collapse_in_lists(&s.split_whitespace().collect::<Vec<_>>().join(" ")))
        .filter(|s| !s.is_empty())
        .collect()
}

/// `IN (?)`, `IN (?, ?, ?)` → `IN (?, ...)`.
fn collapse_in_lists(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("IN (?") {
        let (head, tail) = rest.split_at(at + "IN (".len());
        out.push_str(head);
        let mut after = &tail[1..];
        while let Some(more) = after.strip_prefix(", ?") {
            after = more;
        }
        match after.strip_prefix(')') {
            Some(end) => {
                out.push_str("?, ...)");
                rest = end;
            }
            None => {
                out.push('?');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Each distinct statement with the operations that sent it, in the
/// order first sent; and the operations that sent nothing.
struct Catalogue {
    /// statement → operations that sent it, the first one first.
    statements: Vec<(String, Vec<String>)>,
    silent: Vec<String>,
}

fn catalogue(recorder: &Recorder) -> Catalogue {
    let mut statements: Vec<(String, Vec<String>)> = Vec::new();
    let mut sending = BTreeSet::new();
    for (operation, sql) in recorder.sent.lock().unwrap().iter() {
        if operation == TEST_ONLY {
            continue;
        }
        sending.insert(operation.clone());
        for statement in normalise(sql) {
            match statements.iter_mut().find(|(s, _)| *s == statement) {
                Some((_, ops)) => {
                    if !ops.contains(operation) {
                        ops.push(operation.clone());
                    }
                }
                None => statements.push((statement, vec![operation.clone()])),
            }
        }
    }
    let silent = recorder
        .operations
        .lock()
        .unwrap()
        .iter()
        .filter(|op| !sending.contains(*op))
        .cloned()
        .collect();
    Catalogue { statements, silent }
}

/// The file's text: a header, then one group per operation (in the order
/// the test runs them; connection setup first), each statement once,
/// under the first operation that sent it.
fn render(backend: Backend, catalogue: &Catalogue, order: &[String]) -> String {
    let (name, diesel_own) = match backend {
        Backend::Sqlite => ("SQLite", "none on SQLite"),
        Backend::Postgres => (
            "PostgreSQL",
            "here `SET TIME ZONE 'UTC'` and `SET CLIENT_ENCODING TO 'UTF8'`",
        ),
        Backend::Mysql => (
            "MySQL/MariaDB",
            "here `SET time_zone = '+00:00'` and `SET character_set_client`,\n\
             -- `character_set_connection`, `character_set_results = 'utf8mb4'`).\n\
             -- On a Galera node, the connection setup also sends\n\
             -- `SET SESSION wsrep_sync_wait = 3` (causal reads",
        ),
        _ => ("?", "?"),
    };
    let mut out = format!(
        "-- Every SQL statement stored-session sends to {name}, recorded by\n\
         -- tests/statements.rs through Diesel's instrumentation while it runs every\n\
         -- public operation of the store. Generated: do not edit; rewrite with\n\
         --   UPDATE_SQL_DOCS=1 cargo test --all-features --test statements\n\
         -- (with TEST_POSTGRES_URL and TEST_MYSQL_URL set).\n\
         --\n\
         -- Each statement once, under the first operation that sends it (\"also:\"\n\
         -- names the others), as sent: comments removed, whitespace collapsed,\n\
         -- bind placeholders as Diesel writes them, except that a list of them in\n\
         -- `IN (...)` is written `IN (?, ...)` (one placeholder per value). The\n\
         -- numbers written into the statistics queries come from the test's clock\n\
         -- (2030-03-17) and the default Config. Not listed: what Diesel itself\n\
         -- sends while establishing a connection, before instrumentation sees it\n\
         -- ({diesel_own}).\n"
    );
    if !catalogue.silent.is_empty() {
        out.push_str("--\n-- Operations that send nothing:\n");
        for op in &catalogue.silent {
            out.push_str(&format!("--   {op}\n"));
        }
    }
    let mut groups: BTreeMap<usize, Vec<&(String, Vec<String>)>> = BTreeMap::new();
    for entry in &catalogue.statements {
        let first = &entry.1[0];
        let rank = if first == CONNECTION_SETUP {
            0
        } else {
            1 + order
                .iter()
                .position(|op| op == first)
                .expect("every operation is announced")
        };
        groups.entry(rank).or_default().push(entry);
    }
    for entries in groups.values() {
        out.push_str(&format!("\n-- {}\n", entries[0].1[0]));
        for (statement, ops) in entries {
            if ops.len() > 1 {
                out.push_str(&format!("--   also: {}\n", ops[1..].join("; ")));
            }
            out.push_str(statement);
            out.push_str(";\n");
        }
    }
    out
}

/// The statements a file lists (each on one line, ending with `;`).
fn listed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with("--") && !line.trim().is_empty())
        .map(|line| line.trim_end_matches(';').to_owned())
        .collect()
}

fn doc_path(backend: Backend) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/sql")
        .join(format!("{backend}.sql"))
}

/// Compares the rendering with the checked-in file (or rewrites it).
fn compare(backend: Backend, rendered: &str) {
    let path = doc_path(backend);
    if std::env::var("UPDATE_SQL_DOCS").is_ok_and(|v| !v.is_empty() && v != "0") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rendered).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    if stored == rendered {
        return;
    }
    let (now, before) = (listed(rendered), listed(&stored));
    let mut report = format!(
        "{} is out of date with the SQL the store sends to {backend}.\n",
        path.display()
    );
    for s in now.difference(&before) {
        report.push_str(&format!("+ sent, not listed:    {s}\n"));
    }
    for s in before.difference(&now) {
        report.push_str(&format!("- listed, no longer sent: {s}\n"));
    }
    if now == before {
        report.push_str("The same statements, grouped or annotated differently:\n");
        let (new_lines, old_lines): (Vec<_>, Vec<_>) =
            (rendered.lines().collect(), stored.lines().collect());
        for line in &new_lines {
            if !old_lines.contains(line) {
                report.push_str(&format!("+ {line}\n"));
            }
        }
        for line in &old_lines {
            if !new_lines.contains(line) {
                report.push_str(&format!("- {line}\n"));
            }
        }
    }
    report.push_str(
        "If the change is intended, rewrite the file with\n  \
         UPDATE_SQL_DOCS=1 cargo test --all-features --test statements\n\
         (TEST_POSTGRES_URL and TEST_MYSQL_URL set) and commit it.",
    );
    panic!("{report}");
}

const CREATE: &str = "save: a new session (create)";
const LOAD: &str = "load";

/// A stored session for `fill`; its cookie value.
fn create(rec: &Recorder, store: &SessionStore, fill: impl FnOnce(&mut Session)) -> String {
    rec.within(CREATE, || {
        let mut s = store.load(None).unwrap();
        fill(&mut s);
        match store.save(&mut s).unwrap() {
            CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
            other => panic!("expected a new session, got {other:?}"),
        }
    })
}

/// The stored session of `cookie`.
fn load(rec: &Recorder, store: &SessionStore, cookie: &str) -> Session {
    rec.within(LOAD, || {
        let s = store.load(Some(cookie)).unwrap();
        assert!(!s.is_new(), "the session loads");
        s
    })
}

const TOUCH_AFTER: u64 = 301; // past Config::touch_after (300 s)

/// Runs every public operation on every path that sends its own SQL.
fn every_operation(h: &Harness, rec: &Recorder) {
    rec.op("open_migrated (new database: migrations, start-up check)");
    let store = h.store();
    rec.op("open (start-up check)");
    let reopened = h.builder().open(&h.url).unwrap();
    drop(reopened);
    rec.op("run_migrations (up to date)");
    assert!(store.run_migrations().unwrap().is_empty());

    rec.op(CREATE);
    let cookie = create(rec, &store, |s| s.insert("cart", &[1, 2, 3]).unwrap());

    let mut s = load(rec, &store, &cookie);
    rec.op("load: malformed cookie");
    assert!(store.load(Some("not-an-id")).unwrap().is_new());
    rec.op("load: unknown id");
    let unknown = stored_session::SessionId::generate();
    assert!(store
        .load(Some(unknown.as_cookie_value()))
        .unwrap()
        .is_new());

    rec.op("save: no change");
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);

    rec.op("save: data changed");
    s.insert("cart", &[1, 2, 3, 4]).unwrap();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);

    h.advance(TOUCH_AFTER);
    rec.op("save: no change, idle clock due (touch)");
    let mut s = load(rec, &store, &cookie);
    assert!(matches!(
        store.save(&mut s).unwrap(),
        CookieAction::Refresh(..)
    ));

    h.advance(TOUCH_AFTER);
    rec.op("save: data changed, idle clock due");
    let mut s = load(rec, &store, &cookie);
    s.flash("notice", "saved").unwrap();
    assert!(matches!(
        store.save(&mut s).unwrap(),
        CookieAction::Refresh(..)
    ));

    rec.op("save: expiry changed");
    let mut s = load(rec, &store, &cookie);
    s.set_expiry(Expiry::Idle(Duration::from_secs(7 * 24 * 3600)));
    assert!(matches!(store.save(&mut s).unwrap(), CookieAction::Set(..)));

    rec.op("save: user bound (login without renew)");
    let mut s = load(rec, &store, &cookie);
    s.set_user("alice");
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);

    h.advance(TOUCH_AFTER);
    rec.op("save: user bound, idle clock due");
    let mut s = load(rec, &store, &cookie);
    s.set_user("bob");
    assert!(matches!(
        store.save(&mut s).unwrap(),
        CookieAction::Refresh(..)
    ));

    rec.op("save: write conflict (per-key merge under the row lock)");
    let mut first = load(rec, &store, &cookie);
    let mut second = load(rec, &store, &cookie);
    first.insert("a", &1).unwrap();
    second.insert("b", &2).unwrap();
    assert_eq!(store.save(&mut first).unwrap(), CookieAction::Keep);
    assert_eq!(store.save(&mut second).unwrap(), CookieAction::Keep);
    let merged = load(rec, &store, &cookie);
    assert_eq!(merged.get::<i32>("a").unwrap(), Some(1));
    assert_eq!(merged.get::<i32>("b").unwrap(), Some(2));

    rec.op("save: emptied (delete at the version read)");
    let gone = create(rec, &store, |s| s.insert("k", &1).unwrap());
    let mut s = load(rec, &store, &gone);
    s.clear();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Remove);

    rec.op("save: emptied after a write conflict (locked delete)");
    let gone = create(rec, &store, |s| s.insert("k", &1).unwrap());
    let mut first = load(rec, &store, &gone);
    let mut second = load(rec, &store, &gone);
    first.insert("k", &2).unwrap();
    assert_eq!(store.save(&mut first).unwrap(), CookieAction::Keep);
    assert!(second.remove("k"));
    assert_eq!(store.save(&mut second).unwrap(), CookieAction::Remove);

    rec.op("save: write to a row deleted meanwhile (locked, nothing written)");
    let gone = create(rec, &store, |s| s.insert("k", &1).unwrap());
    let mut late = load(rec, &store, &gone);
    rec.op("destroy (by cookie value)");
    assert!(store.destroy(&gone).unwrap());
    rec.op("save: write to a row deleted meanwhile (locked, nothing written)");
    late.insert("k", &2).unwrap();
    assert_eq!(store.save(&mut late).unwrap(), CookieAction::Remove);

    rec.op("save: renew (anonymous)");
    let anon = create(rec, &store, |s| s.insert("k", &1).unwrap());
    let mut s = load(rec, &store, &anon);
    s.renew();
    assert!(matches!(store.save(&mut s).unwrap(), CookieAction::Set(..)));

    rec.op("save: renew with login (user lock)");
    let anon = create(rec, &store, |s| s.insert("k", &1).unwrap());
    let mut s = load(rec, &store, &anon);
    s.set_user("alice");
    s.renew();
    let CookieAction::Set(alice_1, _) = store.save(&mut s).unwrap() else {
        panic!("renewed")
    };
    let alice_1 = alice_1.as_cookie_value().to_owned();

    rec.op("save: renew after a write conflict (locked renew, user lock)");
    let mut first = load(rec, &store, &alice_1);
    let mut second = load(rec, &store, &alice_1);
    first.insert("x", &1).unwrap();
    assert_eq!(store.save(&mut first).unwrap(), CookieAction::Keep);
    second.renew();
    let CookieAction::Set(alice_1, _) = store.save(&mut second).unwrap() else {
        panic!("renewed")
    };
    let alice_1 = alice_1.as_cookie_value().to_owned();

    rec.op("save: destroy");
    let doomed = create(rec, &store, |s| s.insert("k", &1).unwrap());
    let mut s = load(rec, &store, &doomed);
    s.destroy();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Remove);

    rec.op("load: expired");
    let short = create(rec, &store, |s| {
        s.insert("k", &1).unwrap();
        s.set_expiry(Expiry::Idle(Duration::from_secs(60)));
    });
    h.advance(61);
    assert!(store.load(Some(&short)).unwrap().is_new());

    rec.op("open_migrated (up to date)");
    let capped = h.store_with(
        h.builder()
            .config(h.config().max_sessions_per_user(Some(2))),
    );
    rec.op("save: login beyond max_sessions_per_user (cap)");
    for _ in 0..3 {
        let mut s = capped.load(None).unwrap();
        s.set_user("erin");
        assert!(matches!(
            capped.save(&mut s).unwrap(),
            CookieAction::Set(..)
        ));
    }
    let erin = rec.within("sessions_of", || {
        capped.sessions_of("erin", None, Page::first(10)).unwrap()
    });
    assert_eq!(erin.sessions.len(), 2);
    drop(capped);

    // alice: alice_1 and two newer sessions.
    for _ in 0..2 {
        create(rec, &store, |s| s.set_user("alice"));
    }
    rec.op("sessions_of");
    let current = load(rec, &store, &alice_1);
    let page = store
        .sessions_of("alice", Some(&current), Page::first(2))
        .unwrap();
    assert_eq!(page.sessions.len(), 2);
    let other = page.sessions[0].handle.clone();
    let rest = store
        .sessions_of(
            "alice",
            Some(&current),
            Page {
                limit: 2,
                after: page.next,
            },
        )
        .unwrap();
    assert!(rest.sessions.iter().any(|info| info.current));

    rec.op("revoke (one session, by handle)");
    assert!(store.revoke("alice", &other).unwrap());
    rec.op("revoke_others");
    assert_eq!(store.revoke_others(&current).unwrap(), 1);
    rec.op("revoke_user");
    assert_eq!(store.revoke_user("alice").unwrap(), 1);

    rec.op("stats");
    let stats = store.stats().unwrap();
    assert!(stats.live >= 1);
    rec.op("check");
    store.check().unwrap();

    // Trimming: rows past their own deadline, rows without one (written
    // before the column existed) gone idle, rows past the lifetime.
    let now = h.clock.now().timestamp();
    rec.op(TEST_ONLY);
    // Idle without a deadline of their own; past a one-hour lifetime only.
    common::insert_raw(store.database(), 5, now - 40 * 86_400, now - 40 * 86_400);
    with_conn!(store.database(), |c| {
        use diesel::prelude::*;
        use stored_session::schema::stored_sessions::dsl as t;
        let rows: Vec<_> = (0u8..3)
            .map(|i| {
                (
                    t::sid.eq([0xAB, i].repeat(16)),
                    t::data.eq(b"old".to_vec()),
                    t::created_at.eq(now - 7200),
                    t::updated_at.eq(now),
                )
            })
            .collect();
        diesel::insert_into(t::stored_sessions)
            .values(&rows)
            .execute(c)
            .unwrap()
    });
    let deadline: Vec<String> = (0..3)
        .map(|_| {
            create(rec, &store, |s| {
                s.insert("k", &1).unwrap();
                s.set_expiry(Expiry::Idle(Duration::from_secs(60)));
            })
        })
        .collect();
    h.advance(61);
    rec.op("Trim::count");
    assert!(Trim::new().count(&store).unwrap() >= 8);
    rec.op("Trim::run (batched, each expiry rule)");
    let report = Trim::new()
        .batch_size(2)
        .max_lifetime(Some(Duration::from_secs(3600)))
        .run(&store)
        .unwrap();
    assert!(report.deleted >= 11, "{report:?}");
    rec.within("load: expired", || {
        assert!(store.load(Some(&deadline[0])).unwrap().is_new())
    });
    rec.op("trim_inactive");
    trim_inactive(&store).unwrap();
    rec.op("Trimmer (one run)");
    Trimmer::start(store.clone(), Duration::from_secs(3600)).stop();

    // Key rotation: a new current key, the old one kept to read.
    let kept = create(rec, &store, |s| {
        s.insert("k", &1).unwrap();
        s.set_user("dave");
    });
    rec.op("open (start-up check)");
    let ring = Keyring::new(Key::generate())
        .with_previous(h.keyring.current().clone())
        .unwrap();
    let rotated = SessionStore::builder(ring)
        .config(h.config())
        .open(&h.url)
        .unwrap();
    rec.op("rotate_keys");
    let report = rotate_keys(&rotated).unwrap();
    assert!(report.rotated >= 1, "{report:?}");
    rec.op("save: data changed");
    let mut s = load(rec, &rotated, &kept);
    s.insert("k", &2).unwrap();
    assert_eq!(rotated.save(&mut s).unwrap(), CookieAction::Keep);
    rec.op("revoke_user");
    assert_eq!(rotated.revoke_user("dave").unwrap(), 1);

    rec.op("revoke_all (SessionStore and Database)");
    assert!(rotated.revoke_all().unwrap() >= 1);
    assert_eq!(rotated.database().revoke_all().unwrap(), 0);
    rec.op(TEST_ONLY);
}

fn statements(h: &Harness) {
    let rec = recorder_for(h);
    every_operation(h, &rec);
    let order = rec.operations.lock().unwrap().clone();
    let catalogue = catalogue(&rec);
    assert!(
        catalogue.statements.len() > 20,
        "the instrumentation recorded only {} statements",
        catalogue.statements.len()
    );
    let mut catalogue = catalogue;
    if h.is_galera() {
        // A Galera node's connections get one statement more (causal
        // reads, see src/backend/mysql.rs); everything else is what a
        // plain MySQL/MariaDB server gets, so it is compared with the same
        // file.
        let before = catalogue.statements.len();
        catalogue
            .statements
            .retain(|(sql, ops)| !(sql == GALERA_SETUP && ops[0] == CONNECTION_SETUP));
        assert_eq!(
            catalogue.statements.len() + 1,
            before,
            "a Galera node's connections set `{GALERA_SETUP}`"
        );
    }
    compare(h.backend, &render(h.backend, &catalogue, &order));
}

/// The statement the store adds to every connection on a Galera node.
const GALERA_SETUP: &str = "SET SESSION wsrep_sync_wait = 3";

backend_suite!(statements);

#[test]
fn normalising() {
    assert_eq!(
        normalise("SELECT a\n  FROM t -- a comment\nWHERE x = ? -- binds: [1]"),
        ["SELECT a FROM t WHERE x = ?"]
    );
    assert_eq!(
        normalise("PRAGMA a = 1;PRAGMA b = 'x;--y'; "),
        ["PRAGMA a = 1", "PRAGMA b = 'x;--y'"]
    );
    assert_eq!(
        normalise("DELETE FROM t WHERE id IN (?, ?, ?) AND k IN (?) AND j IN (1, 2)"),
        ["DELETE FROM t WHERE id IN (?, ...) AND k IN (?, ...) AND j IN (1, 2)"]
    );
    assert_eq!(
        listed("-- x\n\n-- y\nSELECT 1;\nSELECT 2;\n"),
        ["SELECT 1".to_owned(), "SELECT 2".to_owned()].into()
    );
}
