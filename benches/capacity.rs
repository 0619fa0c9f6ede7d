//! Capacity figures for SCALING.md, measured on this machine for each
//! backend through the store's public API, with a realistic session of
//! about 1 KiB (a user id and binding, a CSRF token, three flash messages,
//! a cart of four items, a locale and the last pages visited):
//!
//! * loads, updates (load, change the cart, save) and creates (load
//!   without a cookie, fill, save) per second per database core: the
//!   operations of a cell divided by the CPU time the database server's
//!   processes used during it (utime + stime from `/proc/PID/stat` of the
//!   postmaster and its children, or of `mariadbd`); on SQLite the
//!   database runs inside the application, so per CPU-second of the
//!   benchmark process itself;
//! * the throughput of `--workers` threads (default 8), and the client
//!   CPU per operation (the benchmark process: the store, Diesel, the
//!   client library);
//! * bytes per session on disk, indexes included, at `--sessions`
//!   sessions (default 100,000);
//! * the trimming rate: `Trim::run_on` (batches of 1,000) deleting every
//!   one of those sessions once expired.
//!
//! Each of `--rounds` rounds (default 5, after a discarded warm-up round)
//! runs a cell of each operation on each backend, backends and operations
//! in an order that rotates per round; medians over the rounds are
//! reported with the spread (min-max). Created sessions are deleted after
//! each create cell, so every cell sees `--sessions` sessions.
//!
//! Run: `cargo bench --all-features --bench capacity -- [--backends
//! sqlite,postgres,mysql] [--sessions N] [--rounds R] [--cell-secs S]
//! [--workers W]`. Servers: `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `TEST_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306/test`); a fresh database is
//! created on each and dropped at the end. The database servers must run
//! on this machine (their processes' CPU is read from `/proc`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde::{Deserialize, Serialize};
use stored_session::{
    Clock, CookieAction, Keyring, Session, SessionStore, Trim, ENVELOPE_OVERHEAD,
};

/// The operations measured in cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Load,
    Update,
    Create,
}

impl Op {
    const ALL: [Op; 3] = [Op::Load, Op::Update, Op::Create];

    fn name(self) -> &'static str {
        match self {
            Op::Load => "load",
            Op::Update => "update (load, modify, save)",
            Op::Create => "create",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
        }
    }
}

struct Args {
    backends: Vec<Kind>,
    sessions: usize,
    rounds: usize,
    cell: Duration,
    workers: usize,
}

fn usage(message: &str) -> ! {
    let help = message.is_empty();
    eprintln!(
        "{message}\nusage: cargo bench --all-features --bench capacity -- [--backends sqlite,postgres,mysql] \
         [--sessions N] [--rounds R] [--cell-secs S] [--workers W]"
    );
    std::process::exit(if help { 0 } else { 2 })
}

fn parse_args() -> Option<Args> {
    let mut args = Args {
        backends: vec![Kind::Sqlite, Kind::Postgres, Kind::Mysql],
        sessions: 100_000,
        rounds: 5,
        cell: Duration::from_secs(3),
        workers: 8,
    };
    let mut bench = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        let number = |name: &str, text: String| -> usize {
            text.replace('_', "")
                .parse()
                .unwrap_or_else(|_| usage(&format!("{name}: not a number: {text}")))
        };
        match arg.as_str() {
            "--bench" => bench = true,
            "--help" | "-h" => usage(""),
            // `cargo test --all-targets` lists or runs this target: nothing to do.
            "--list" => return None,
            "--backends" => {
                args.backends = value("--backends")
                    .split(',')
                    .map(|b| match b.trim() {
                        "sqlite" => Kind::Sqlite,
                        "postgres" => Kind::Postgres,
                        "mysql" | "mariadb" => Kind::Mysql,
                        other => usage(&format!("unknown backend {other}")),
                    })
                    .collect()
            }
            "--sessions" => args.sessions = number("--sessions", value("--sessions")).max(1000),
            "--rounds" => args.rounds = number("--rounds", value("--rounds")).max(1),
            "--cell-secs" => {
                args.cell =
                    Duration::from_secs(number("--cell-secs", value("--cell-secs")).max(1) as u64)
            }
            "--workers" => args.workers = number("--workers", value("--workers")).max(1),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if !bench {
        eprintln!("capacity: run with `cargo bench --all-features --bench capacity`");
        return None;
    }
    Some(args)
}

// ---------------------------------------------------------------------------
// The session: about 1 KiB of realistic data.

#[derive(Serialize, Deserialize)]
struct Item {
    sku: String,
    name: String,
    qty: u32,
    unit_price_cents: u64,
}

#[derive(Serialize, Deserialize)]
struct Cart {
    items: Vec<Item>,
    currency: String,
    coupon: Option<String>,
    shipping: String,
}

fn cart(n: u64) -> Cart {
    let item = |sku: &str, name: &str, qty, price| Item {
        sku: sku.into(),
        name: name.into(),
        qty,
        unit_price_cents: price,
    };
    Cart {
        items: vec![
            item(
                "SKU-10492-BLK-M",
                "Merino wool crew-neck sweater, black, size M",
                1 + (n % 3) as u32,
                8_900,
            ),
            item(
                "SKU-22817-NAV-32",
                "Slim-fit stretch chinos, navy, 32/34",
                1,
                6_450,
            ),
            item(
                "SKU-30051-WHT-42",
                "Leather low-top sneakers, white, EU 42",
                1,
                11_900,
            ),
            item(
                "SKU-41230-GRY-OS",
                "Ribbed cotton beanie, heather grey, one size",
                2,
                1_990,
            ),
        ],
        currency: "EUR".into(),
        coupon: Some("WINTER10".into()),
        shipping: "standard: 3-5 working days, tracked, signature on delivery".into(),
    }
}

/// Fills a new session with the benchmark's data (user `n`).
fn fill(s: &mut Session, n: u64) {
    s.set_user(format!("user-{n:08}"));
    s.insert("user_id", &n).unwrap();
    let _ = s.csrf_token();
    s.flash("notice", "Your shipping address has been saved.")
        .unwrap();
    s.flash(
        "info",
        "Free returns within 30 days on every order, and free shipping over 50 EUR.",
    )
    .unwrap();
    s.flash(
        "warning",
        "Please confirm your e-mail address to keep your wishlist.",
    )
    .unwrap();
    s.insert("cart", &cart(n)).unwrap();
    s.insert("locale", "en-GB").unwrap();
    s.insert("theme", "dark").unwrap();
    s.insert(
        "last_path",
        "/shop/men/knitwear?sort=price-asc&size=M&colour=black&page=2",
    )
    .unwrap();
    s.insert(
        "recently_viewed",
        &[
            "SKU-10492-BLK-M",
            "SKU-10492-NAV-M",
            "SKU-22817-NAV-32",
            "SKU-30051-WHT-42",
            "SKU-41230-GRY-OS",
            "SKU-51002-OLV-L",
        ],
    )
    .unwrap();
}

/// A new session; its cookie value. Errors (a timeout on a machine too
/// busy to answer in time) are counted by the callers, not hidden.
fn create(store: &SessionStore, n: u64) -> Result<String, stored_session::Error> {
    let mut s = store.load(None)?;
    fill(&mut s, n);
    match store.save(&mut s)? {
        CookieAction::Set(id, _) => Ok(id.as_cookie_value().to_owned()),
        other => panic!("a new session must get a cookie, got {other:?}"),
    }
}

/// A request that changes the cart: load, decode, change, save.
fn update(store: &SessionStore, cookie: &str, step: u64) -> Result<(), stored_session::Error> {
    let mut s = store.load(Some(cookie))?;
    assert!(!s.is_new(), "the session must load");
    let mut cart: Cart = s.get("cart").unwrap().expect("a cart");
    cart.items[0].qty = 1 + (step % 3) as u32;
    s.insert("cart", &cart).unwrap();
    s.insert(
        "last_path",
        if step % 2 == 0 {
            "/shop/men/knitwear?sort=price-asc&size=M&colour=black&page=2"
        } else {
            "/shop/men/knitwear?sort=price-asc&size=M&colour=black&page=3"
        },
    )
    .unwrap();
    let action = store.save(&mut s)?;
    assert!(
        matches!(action, CookieAction::Keep | CookieAction::Refresh(..)),
        "{action:?}"
    );
    Ok(())
}

/// xorshift64*: the session each request picks.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

// ---------------------------------------------------------------------------
// CPU time from /proc.

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// Fields of `/proc/PID/stat` after the command name: (ppid, utime +
/// stime, cutime + cstime), in clock ticks.
fn proc_stat(pid: &str) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((f.get(1)?.parse().ok()?, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// Whose CPU counts as the database's.
#[derive(Debug, Clone)]
enum DbCpu {
    /// The benchmark process itself (SQLite runs in it).
    This,
    /// The postmaster and its children, less the client backends of other
    /// databases (other programs may use the same server meanwhile).
    Postmaster(u32),
    /// The server process's threads (`mariadbd`), less the threads of
    /// connections to other databases.
    Process(u32),
    /// Not found: no per-core figure.
    Unknown(String),
}

/// Ticks used so far by each process or thread that counts.
type Ticks = BTreeMap<u32, u64>;

/// The server's ids (pids or thread ids) of client connections to other
/// databases than `db`, from `sql` giving `n` = the id and `name` =
/// "database|kind"; `other` says which kinds of rows are such clients.
fn others(admin: &mut Admin, sql: &str, other: impl Fn(&str, &str) -> bool) -> Vec<u32> {
    admin
        .named(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter(|(name, _)| {
            let (db, kind) = name.split_once('|').unwrap_or((name, ""));
            other(db, kind)
        })
        .map(|(_, id)| id as u32)
        .collect()
}

/// The numeric entries of a `/proc` directory.
fn numeric_entries(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default()
}

impl DbCpu {
    /// Ticks used so far by what counts as the database `db`.
    fn ticks(&self, admin: &mut Admin, db: &str) -> Option<Ticks> {
        match self {
            DbCpu::This => Some(Ticks::from([(0, proc_stat("self")?.1)])),
            DbCpu::Postmaster(postmaster) => {
                let skip = others(
                    admin,
                    "SELECT COALESCE(datname, '') || '|' || backend_type AS name, \
                     CAST(pid AS BIGINT) AS n FROM pg_stat_activity",
                    |d, kind| kind == "client backend" && d != db,
                );
                let mut out = Ticks::from([(*postmaster, proc_stat(&postmaster.to_string())?.1)]);
                for pid in numeric_entries("/proc") {
                    if let Some((ppid, own, _)) = proc_stat(&pid) {
                        let pid: u32 = pid.parse().ok()?;
                        if ppid == *postmaster && !skip.contains(&pid) {
                            out.insert(pid, own);
                        }
                    }
                }
                Some(out)
            }
            DbCpu::Process(server) => {
                let skip = others(
                    admin,
                    "SELECT CONCAT(COALESCE(DB, ''), '|', COMMAND) AS name, \
                     CAST(TID AS SIGNED) AS n FROM information_schema.PROCESSLIST",
                    |d, command| command != "Daemon" && d != db,
                );
                let mut out = Ticks::new();
                for tid in numeric_entries(&format!("/proc/{server}/task")) {
                    let id: u32 = tid.parse().ok()?;
                    if skip.contains(&id) {
                        continue;
                    }
                    if let Some((_, own, _)) = proc_stat(&format!("{server}/task/{tid}")) {
                        out.insert(id, own);
                    }
                }
                Some(out)
            }
            DbCpu::Unknown(_) => None,
        }
    }
}

/// Ticks used between two snapshots by what counts at the second (a
/// process or thread that appeared meanwhile counts in full).
fn ticks_between(start: &Ticks, end: &Ticks) -> u64 {
    end.iter()
        .map(|(id, t)| t.saturating_sub(start.get(id).copied().unwrap_or(0)))
        .sum()
}

fn pid_in(path: &str) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// Backends: a fresh database, admin queries, sizes.

#[derive(QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

#[derive(QueryableByName)]
struct Big {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Named {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `url` with its database (the path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[start..].find('/').map_or(base.len(), |i| start + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

enum Admin {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection),
    Mysql(diesel::MysqlConnection),
}

impl Admin {
    fn exec(&mut self, sql: &str) {
        let r = match self {
            Admin::Sqlite(c) => diesel::sql_query(sql).execute(c),
            Admin::Postgres(c) => diesel::sql_query(sql).execute(c),
            Admin::Mysql(c) => diesel::sql_query(sql).execute(c),
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn text(&mut self, sql: &str) -> String {
        let r = match self {
            Admin::Sqlite(c) => diesel::sql_query(sql).get_result::<Text>(c),
            Admin::Postgres(c) => diesel::sql_query(sql).get_result::<Text>(c),
            Admin::Mysql(c) => diesel::sql_query(sql).get_result::<Text>(c),
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}")).v
    }

    fn big(&mut self, sql: &str) -> i64 {
        let r = match self {
            Admin::Sqlite(c) => diesel::sql_query(sql).get_result::<Big>(c),
            Admin::Postgres(c) => diesel::sql_query(sql).get_result::<Big>(c),
            Admin::Mysql(c) => diesel::sql_query(sql).get_result::<Big>(c),
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}")).n
    }

    fn named(&mut self, sql: &str) -> Result<Vec<(String, i64)>, diesel::result::Error> {
        let r = match self {
            Admin::Sqlite(c) => diesel::sql_query(sql).load::<Named>(c),
            Admin::Postgres(c) => diesel::sql_query(sql).load::<Named>(c),
            Admin::Mysql(c) => diesel::sql_query(sql).load::<Named>(c),
        };
        r.map(|rows| rows.into_iter().map(|r| (r.name, r.n)).collect())
    }
}

/// One backend under test: its store, its raw connection, its cleanup.
struct Target {
    kind: Kind,
    /// The database's name on a server.
    name: String,
    url: String,
    admin: Admin,
    cpu: DbCpu,
    version: String,
    cleanup: Box<dyn FnMut()>,
}

impl Drop for Target {
    /// Drops the database (also when the benchmark panics).
    fn drop(&mut self) {
        (self.cleanup)();
    }
}

fn open_target(kind: Kind) -> Target {
    let name = format!("ss_capacity_{}", std::process::id());
    match kind {
        Kind::Sqlite => {
            let path: PathBuf = std::env::temp_dir().join(format!("{name}.db"));
            let remove = {
                let path = path.clone();
                move || {
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                    }
                }
            };
            remove();
            let url = format!("sqlite://{}", path.display());
            let mut admin = Admin::Sqlite(
                diesel::SqliteConnection::establish(&path.display().to_string()).unwrap(),
            );
            let version = format!(
                "SQLite {} (file, WAL, synchronous = NORMAL)",
                admin.text("SELECT sqlite_version() AS v")
            );
            Target {
                kind,
                name,
                url,
                admin,
                cpu: DbCpu::This,
                version,
                cleanup: Box::new(remove),
            }
        }
        Kind::Postgres => {
            let server = std::env::var("TEST_POSTGRES_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let mut root = diesel::PgConnection::establish(&server)
                .unwrap_or_else(|e| panic!("PostgreSQL at {server}: {e}"));
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut root)
                .unwrap();
            let url = with_database(&server, &name);
            let mut admin = Admin::Postgres(diesel::PgConnection::establish(&url).unwrap());
            let version = admin.text("SELECT version() AS v");
            let dir = admin.text("SELECT current_setting('data_directory') AS v");
            let cpu = match pid_in(&format!("{dir}/postmaster.pid")) {
                Some(pid) => DbCpu::Postmaster(pid),
                None => DbCpu::Unknown(format!("cannot read {dir}/postmaster.pid")),
            };
            let dropped = name.clone();
            let drop_db = move || {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {dropped} WITH (FORCE)"))
                        .execute(&mut root);
            };
            Target {
                kind,
                name,
                url,
                admin,
                cpu,
                version: version.split(" on ").next().unwrap_or(&version).to_owned(),
                cleanup: Box::new(drop_db),
            }
        }
        Kind::Mysql => {
            let server = std::env::var("TEST_MYSQL_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".into());
            let mut root = diesel::MysqlConnection::establish(&server)
                .unwrap_or_else(|e| panic!("MySQL at {server}: {e}"));
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut root)
                .unwrap();
            let url = with_database(&server, &name);
            let mut admin = Admin::Mysql(diesel::MysqlConnection::establish(&url).unwrap());
            let version = admin.text("SELECT VERSION() AS v");
            let pid_file = admin.text("SELECT @@pid_file AS v");
            let datadir = admin.text("SELECT @@datadir AS v");
            let cpu = pid_in(&pid_file)
                .or_else(|| pid_in(&format!("{datadir}/{pid_file}")))
                .map_or_else(
                    || DbCpu::Unknown(format!("cannot read the pid file {pid_file}")),
                    DbCpu::Process,
                );
            let dropped = name.clone();
            let drop_db = move || {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {dropped}"))
                    .execute(&mut root);
            };
            Target {
                kind,
                name,
                url,
                admin,
                cpu,
                version: format!("MariaDB/MySQL {version}"),
                cleanup: Box::new(drop_db),
            }
        }
    }
}

/// The table's bytes on disk: (table, indexes, total, detail).
fn table_size(target: &mut Target, optimize: bool) -> (i64, i64, String) {
    match target.kind {
        Kind::Sqlite => {
            target.admin.exec("PRAGMA wal_checkpoint(TRUNCATE)");
            let page = target
                .admin
                .big("SELECT page_size AS n FROM pragma_page_size()");
            let pages = target
                .admin
                .big("SELECT page_count AS n FROM pragma_page_count()");
            let free = target
                .admin
                .big("SELECT freelist_count AS n FROM pragma_freelist_count()");
            let file = (pages - free) * page;
            match target.admin.named(
                "SELECT d.name AS name, CAST(SUM(d.pgsize) AS BIGINT) AS n FROM dbstat AS d \
                 JOIN sqlite_master AS m ON m.name = d.name \
                 WHERE m.tbl_name = 'stored_sessions' GROUP BY d.name",
            ) {
                Ok(parts) => {
                    let table: i64 = parts
                        .iter()
                        .filter(|(n, _)| n == "stored_sessions")
                        .map(|(_, b)| *b)
                        .sum();
                    let indexes: i64 = parts
                        .iter()
                        .filter(|(n, _)| n != "stored_sessions")
                        .map(|(_, b)| *b)
                        .sum();
                    (
                        table,
                        indexes,
                        format!("dbstat; database file {file} bytes in use (page size {page})"),
                    )
                }
                Err(_) => (file, 0, "file pages in use (no dbstat)".into()),
            }
        }
        Kind::Postgres => {
            target.admin.exec("VACUUM ANALYZE stored_sessions");
            let table = target.admin.big(
                "SELECT CAST(pg_total_relation_size('stored_sessions') - \
                 pg_indexes_size('stored_sessions') AS BIGINT) AS n",
            );
            let indexes = target
                .admin
                .big("SELECT CAST(pg_indexes_size('stored_sessions') AS BIGINT) AS n");
            (
                table,
                indexes,
                "pg_total_relation_size after VACUUM ANALYZE (heap, TOAST, free space and visibility maps; pg_indexes_size)".into(),
            )
        }
        Kind::Mysql => {
            if optimize {
                target.admin.exec("OPTIMIZE TABLE stored_sessions");
            }
            target.admin.exec("ANALYZE TABLE stored_sessions");
            let table = target.admin.big(
                "SELECT CAST(data_length AS SIGNED) AS n FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = 'stored_sessions'",
            );
            let indexes = target.admin.big(
                "SELECT CAST(index_length AS SIGNED) AS n FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = 'stored_sessions'",
            );
            (
                table,
                indexes,
                format!(
                    "information_schema data_length + index_length after {}ANALYZE TABLE",
                    if optimize { "OPTIMIZE TABLE and " } else { "" }
                ),
            )
        }
    }
}

// ---------------------------------------------------------------------------
// Cells.

/// What one cell measured.
#[derive(Debug, Clone, Copy)]
struct Cell {
    ops: u64,
    /// Operations that returned an error (not in `ops`).
    errors: u64,
    wall: f64,
    /// Database CPU-seconds (`None`: unknown).
    db_cpu: Option<f64>,
    /// CPU-seconds of this process.
    app_cpu: f64,
}

struct Meter {
    db: DbCpu,
    tick: f64,
    /// The database's name on its server.
    name: String,
}

type Snapshot = (Instant, Option<Ticks>, u64);

impl Meter {
    fn of(target: &Target, tick: f64) -> Meter {
        Meter {
            db: target.cpu.clone(),
            tick,
            name: target.name.clone(),
        }
    }

    fn app_ticks() -> u64 {
        proc_stat("self").map_or(0, |(_, own, _)| own)
    }

    fn snapshot(&self, admin: &mut Admin) -> Snapshot {
        let db = self.db.ticks(admin, &self.name);
        (Instant::now(), db, Self::app_ticks())
    }

    fn since(&self, start: Snapshot, ops: u64, admin: &mut Admin) -> Cell {
        let (t, db, app) = start;
        let wall = t.elapsed().as_secs_f64();
        let app_now = Self::app_ticks();
        let db_now = self.db.ticks(admin, &self.name);
        Cell {
            ops,
            errors: 0,
            wall,
            db_cpu: db
                .zip(db_now)
                .map(|(a, b)| ticks_between(&a, &b) as f64 / self.tick),
            app_cpu: app_now.saturating_sub(app) as f64 / self.tick,
        }
    }
}

/// Runs `op` on `workers` threads for `length`; what it measured, and the
/// cookies of the sessions it created.
fn cell(
    p: &mut Prepared,
    op: Op,
    workers: usize,
    length: Duration,
    meter: &Meter,
    seed: u64,
) -> (Cell, Vec<String>) {
    let (store, cookies, admin) = (&p.store, &p.cookies[..], &mut p.target.admin);
    let stop = AtomicBool::new(false);
    let created = Mutex::new(Vec::new());
    let start = meter.snapshot(admin);
    let (ops, errors): (u64, u64) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (stop, created) = (&stop, &created);
                scope.spawn(move || {
                    let mut rng = Rng(seed ^ ((w as u64 + 1) * 0x9E37_79B9_7F4A_7C15));
                    let mut mine = Vec::new();
                    let (mut n, mut errors) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let i = (rng.next() % cookies.len() as u64) as usize;
                        let done = match op {
                            Op::Load => store.load(Some(&cookies[i])).map(|s| {
                                assert!(!s.is_new(), "the session must load");
                            }),
                            Op::Update => update(store, &cookies[i], n),
                            Op::Create => {
                                create(store, rng.next() % 10_000_000).map(|c| mine.push(c))
                            }
                        };
                        match done {
                            Ok(()) => n += 1,
                            Err(e) => {
                                errors += 1;
                                eprintln!("{op:?} failed: {e}");
                            }
                        }
                    }
                    created.lock().unwrap().extend(mine);
                    (n, errors)
                })
            })
            .collect();
        std::thread::sleep(length);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(n, e), (a, b)| (n + a, e + b))
    });
    let mut measured = meter.since(start, ops, admin);
    measured.errors = errors;
    (measured, created.into_inner().unwrap())
}

// ---------------------------------------------------------------------------
// Statistics.

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// Rounds to 3 significant digits, with thousands separators.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let digits = if x == 0.0 {
        0
    } else {
        x.abs().log10().floor() as i32
    };
    let (rounded, decimals) = if digits >= 2 {
        let scale = 10f64.powi(digits - 2);
        ((x / scale).round() * scale, 0)
    } else {
        (x, (2 - digits) as usize)
    };
    let text = format!("{rounded:.decimals$}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 && c != '-' {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        grouped
    } else {
        format!("{grouped}.{frac}")
    }
}

/// "median (min-max)".
fn spread(v: &[f64]) -> String {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return "n/a".into();
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    format!("{} ({}–{})", num(median(v)), num(lo), num(hi))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------

/// What was measured on one backend outside the cells.
struct Extras {
    populate: Cell,
    envelope: u64,
    size: (i64, i64, String),
    compact: Option<(i64, i64, String)>,
    after: (i64, i64, String),
    trim: Cell,
    trimmed: u64,
    batch_rates: Vec<f64>,
}

struct Prepared {
    target: Target,
    store: SessionStore,
    cookies: Vec<String>,
    max_id: i64,
    populate: Cell,
}

fn prepare(kind: Kind, args: &Args, meter_tick: f64) -> Prepared {
    let target = open_target(kind);
    let store = SessionStore::builder(Keyring::generate())
        .open_migrated(&target.url)
        .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
    let meter = Meter::of(&target, meter_tick);
    let mut target = target;
    eprintln!(
        "{}: creating {} sessions with {} workers…",
        kind.name(),
        args.sessions,
        args.workers
    );
    let start = meter.snapshot(&mut target.admin);
    let per = args.sessions.div_ceil(args.workers);
    let (cookies, errors): (Vec<String>, u64) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.workers)
            .map(|w| {
                let store = &store;
                let n = per.min(args.sessions.saturating_sub(w * per));
                scope.spawn(move || {
                    let mut errors = 0u64;
                    let cookies = (0..n)
                        .map(|i| loop {
                            match create(store, (w * per + i) as u64) {
                                Ok(cookie) => break cookie,
                                Err(e) if errors < 100 => {
                                    errors += 1;
                                    eprintln!("create failed: {e}");
                                }
                                Err(e) => panic!("create failed 100 times: {e}"),
                            }
                        })
                        .collect::<Vec<_>>();
                    (cookies, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).fold(
            (Vec::new(), 0),
            |(mut all, e), (mine, errors)| {
                all.extend(mine);
                (all, e + errors)
            },
        )
    });
    let mut populate = meter.since(start, cookies.len() as u64, &mut target.admin);
    populate.errors = errors;
    let max_id = target
        .admin
        .big("SELECT COALESCE(MAX(id), 0) AS n FROM stored_sessions");
    Prepared {
        target,
        store,
        cookies,
        max_id,
        populate,
    }
}

fn main() {
    let Some(args) = parse_args() else {
        return;
    };
    let tick = clock_ticks();
    let started_load = loadavg();
    let started_at = chrono::Utc::now();
    let mut prepared: Vec<Prepared> = args
        .backends
        .iter()
        .map(|&kind| prepare(kind, &args, tick))
        .collect();

    // Sizes at `--sessions` sessions, before any other write.
    let mut once: BTreeMap<Kind, Extras> = BTreeMap::new();
    for p in &mut prepared {
        let envelope = p.target.admin.big(match p.target.kind {
            Kind::Sqlite => "SELECT CAST(AVG(length(data)) AS INTEGER) AS n FROM stored_sessions",
            Kind::Postgres => {
                "SELECT CAST(AVG(octet_length(data)) AS BIGINT) AS n FROM stored_sessions"
            }
            Kind::Mysql => "SELECT CAST(AVG(LENGTH(data)) AS SIGNED) AS n FROM stored_sessions",
        }) as u64;
        let size = table_size(&mut p.target, false);
        let compact = (p.target.kind == Kind::Mysql).then(|| table_size(&mut p.target, true));
        once.insert(
            p.target.kind,
            Extras {
                populate: p.populate,
                envelope,
                size,
                compact,
                after: (0, 0, String::new()),
                trim: p.populate,
                trimmed: 0,
                batch_rates: Vec::new(),
            },
        );
    }

    // Alternating rounds of cells; round 0 is a warm-up.
    let mut cells: BTreeMap<(Kind, Op), Vec<Cell>> = BTreeMap::new();
    let n_backends = prepared.len();
    for round in 0..=args.rounds {
        let length = if round == 0 {
            Duration::from_secs(1)
        } else {
            args.cell
        };
        eprintln!("round {round}/{} (load average {})", args.rounds, loadavg());
        for b in 0..n_backends {
            let p = &mut prepared[(b + round) % n_backends];
            let meter = Meter::of(&p.target, tick);
            for o in 0..Op::ALL.len() {
                let op = Op::ALL[(o + round) % Op::ALL.len()];
                let seed = 0x5EED_0000 + (round * 7 + o) as u64;
                let (measured, created) = cell(p, op, args.workers, length, &meter, seed);
                if !created.is_empty() {
                    // Back to `--sessions` sessions for the next cell.
                    p.target.admin.exec(&format!(
                        "DELETE FROM stored_sessions WHERE id > {}",
                        p.max_id
                    ));
                }
                if round > 0 {
                    cells.entry((p.target.kind, op)).or_default().push(measured);
                }
            }
        }
    }
    let measured_load = loadavg();

    // Sizes after the rounds, then trimming every session once expired.
    for p in &mut prepared {
        let o = once.get_mut(&p.target.kind).unwrap();
        o.after = table_size(&mut p.target, false);
        let meter = Meter::of(&p.target, tick);
        let later = chrono::Utc::now() + chrono::Duration::days(400);
        let config = p
            .store
            .config()
            .clone()
            .clock(Clock::from_fn(move || later));
        let batches = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = batches.clone();
        let start = meter.snapshot(&mut p.target.admin);
        let mut last = (Instant::now(), 0u64);
        let report = Trim::new()
            .on_batch(move |r| {
                let now = Instant::now();
                let rows = r.deleted - last.1;
                sink.lock()
                    .unwrap()
                    .push(rows as f64 / now.duration_since(last.0).as_secs_f64());
                last = (now, r.deleted);
            })
            .run_on(p.store.database(), &config)
            .unwrap();
        o.trim = meter.since(start, report.deleted, &mut p.target.admin);
        o.trimmed = report.deleted;
        o.batch_rates = batches.lock().unwrap().clone();
        assert_eq!(
            report.deleted as usize,
            p.cookies.len(),
            "every session trimmed"
        );
    }

    // ------------------------------------------------------------------
    // The report.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Capacity: stored-session on {}\n",
        args.backends
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "Measured {} UTC with `cargo bench --all-features --bench capacity -- --backends {} --sessions {} --rounds {} --cell-secs {} --workers {}`; load average {} at the start, {} after the rounds (2 cores, shared).\n",
        started_at.format("%Y-%m-%d %H:%M"),
        args.backends.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        args.sessions,
        args.rounds,
        args.cell.as_secs(),
        args.workers,
        started_load,
        measured_load
    );
    let _ = writeln!(out, "| backend | server |\n|---|---|");
    for p in &prepared {
        let cpu = match &p.target.cpu {
            DbCpu::This => "the benchmark process (in-process database)".to_owned(),
            DbCpu::Postmaster(pid) => {
                format!("postmaster {pid} and its children, less other databases' client backends")
            }
            DbCpu::Process(pid) => {
                format!("server process {pid}'s threads, less other databases' connection threads")
            }
            DbCpu::Unknown(why) => format!("unknown: {why}"),
        };
        let _ = writeln!(
            out,
            "| {} | {}; database CPU: {cpu} |",
            p.target.kind.name(),
            p.target.version
        );
    }

    let _ = writeln!(
        out,
        "\n## Operations ({} workers; median of {} rounds, min–max in brackets)\n",
        args.workers, args.rounds
    );
    let _ = writeln!(
        out,
        "| backend | operation | ops/s | ops per DB CPU-second | DB CPU µs/op | client CPU µs/op | DB cores busy |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for p in &prepared {
        let kind = p.target.kind;
        for op in Op::ALL {
            let v = &cells[&(kind, op)];
            let rate: Vec<f64> = v.iter().map(|c| c.ops as f64 / c.wall).collect();
            let (per_core, db_us, app_us): (Vec<f64>, Vec<f64>, Vec<f64>) = if kind == Kind::Sqlite
            {
                (
                    v.iter().map(|c| c.ops as f64 / c.app_cpu).collect(),
                    v.iter().map(|c| c.app_cpu * 1e6 / c.ops as f64).collect(),
                    v.iter().map(|c| c.app_cpu * 1e6 / c.ops as f64).collect(),
                )
            } else {
                (
                    v.iter()
                        .map(|c| c.db_cpu.map_or(f64::NAN, |d| c.ops as f64 / d))
                        .collect(),
                    v.iter()
                        .map(|c| c.db_cpu.map_or(f64::NAN, |d| d * 1e6 / c.ops as f64))
                        .collect(),
                    v.iter().map(|c| c.app_cpu * 1e6 / c.ops as f64).collect(),
                )
            };
            let (per_core, db_us) = if kind == Kind::Sqlite {
                (
                    format!("{} ¹", spread(&per_core)),
                    format!("{} ¹", spread(&db_us)),
                )
            } else {
                (spread(&per_core), spread(&db_us))
            };
            let busy: Vec<f64> = v
                .iter()
                .map(|c| {
                    if kind == Kind::Sqlite {
                        c.app_cpu / c.wall
                    } else {
                        c.db_cpu.map_or(f64::NAN, |d| d / c.wall)
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {per_core} | {db_us} | {} | {}{} |",
                kind.name(),
                op.name(),
                spread(&rate),
                spread(&app_us),
                spread(&busy),
                if kind == Kind::Sqlite { " ¹" } else { "" }
            );
        }
    }
    if args.backends.contains(&Kind::Sqlite) {
        let _ = writeln!(
            out,
            "\n¹ SQLite runs inside the application: per CPU-second of the whole benchmark process (store and database together), and its CPU per operation; the client CPU column is the same figure."
        );
    }

    let _ = writeln!(
        out,
        "\n## Storage at {} sessions (mean envelope in brackets: the encrypted session data)\n",
        args.sessions
    );
    let _ = writeln!(
        out,
        "| backend | table | indexes | total | bytes per session | after the rounds | how |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for p in &prepared {
        let kind = p.target.kind;
        let o = &once[&kind];
        let n = p.cookies.len() as f64;
        let row = |(t, i, how): &(i64, i64, String), after: &(i64, i64, String)| {
            format!(
                "| {} | {} | {} | {} | {} ({} B) | {} | {how} |",
                kind.name(),
                num(*t as f64),
                num(*i as f64),
                num((*t + *i) as f64),
                num((*t + *i) as f64 / n),
                o.envelope,
                num((after.0 + after.1) as f64 / n),
            )
        };
        let _ = writeln!(out, "{}", row(&o.size, &o.after));
        if let Some(compact) = &o.compact {
            let _ = writeln!(out, "{}", row(compact, &o.after));
        }
    }

    let _ = writeln!(
        out,
        "\n## Trimming {} expired sessions (`Trim::run_on`, batches of 1,000, one run per backend)\n",
        args.sessions
    );
    let _ = writeln!(
        out,
        "| backend | rows | seconds | rows/s | per batch: median rows/s (p10–p90) | rows per DB CPU-second |\n|---|---:|---:|---:|---:|---:|"
    );
    for p in &prepared {
        let kind = p.target.kind;
        let o = &once[&kind];
        let cpu = if kind == Kind::Sqlite {
            o.trim.app_cpu
        } else {
            o.trim.db_cpu.unwrap_or(f64::NAN)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {} | {} ({}–{}) | {}{} |",
            kind.name(),
            num(o.trimmed as f64),
            o.trim.wall,
            num(o.trimmed as f64 / o.trim.wall),
            num(median(&o.batch_rates)),
            num(percentile(&o.batch_rates, 10.0)),
            num(percentile(&o.batch_rates, 90.0)),
            num(o.trimmed as f64 / cpu),
            if kind == Kind::Sqlite { " ¹" } else { "" }
        );
    }

    let _ = writeln!(
        out,
        "\n## Creating the {} sessions ({} workers, one run)\n",
        args.sessions, args.workers
    );
    let _ = writeln!(
        out,
        "| backend | sessions/s | per DB CPU-second | client CPU µs/op |\n|---|---:|---:|---:|"
    );
    for p in &prepared {
        let c = once[&p.target.kind].populate;
        let cpu = if p.target.kind == Kind::Sqlite {
            c.app_cpu
        } else {
            c.db_cpu.unwrap_or(f64::NAN)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            p.target.kind.name(),
            num(c.ops as f64 / c.wall),
            num(c.ops as f64 / cpu),
            num(c.app_cpu * 1e6 / c.ops as f64)
        );
    }

    let failed: u64 = cells.values().flatten().map(|c| c.errors).sum::<u64>()
        + once.values().map(|o| o.populate.errors).sum::<u64>();
    let total: u64 = cells.values().flatten().map(|c| c.ops).sum();
    let _ = writeln!(
        out,
        "\nOperations that returned an error (not counted above; printed on stderr): {failed} of {}.",
        total + failed
    );
    let _ = writeln!(
        out,
        "\n## Method\n\n\
         * The store is opened with `SessionStore::builder(keyring).open_migrated(url)` and the default `Config` and `PoolOptions` (8 connections, the client-side deadline on); every operation goes through its public API.\n\
         * Session: user binding (`set_user`), a `user_id`, the CSRF token, three flash messages, a cart of four items, a locale, a theme, the last page and six recently viewed products: {} bytes of envelope on average, of which {} bytes of MessagePack session data and {} of envelope (header, salt, nonce, tag).\n\
         * {} sessions are created first ({} workers). Each cell runs one operation on {} worker threads for {} s, each request on a random one of those sessions: *load* = `load(cookie)`; *update* = `load`, decode and change the cart and the last page, `save` (a compare-and-swap UPDATE; the idle clock moves along when due); *create* = `load(None)`, fill, `save` (an INSERT). Sessions created in a cell are deleted after it (one DELETE, outside the cell).\n\
         * Database CPU: utime + stime from `/proc` before and after each cell, summed over the PostgreSQL postmaster and its children (this database's backends, WAL writer, checkpointer, background writer, autovacuum) or over the `mariadbd` threads (`/proc/PID/task`: this database's connections and the server's own threads), leaving out the client backends (`pg_stat_activity`) and connection threads (`information_schema.PROCESSLIST.TID`) of other databases, as other programs used the same servers meanwhile. The shared background work (WAL, flushing, purge) is counted whole. SQLite: the benchmark process's own utime + stime (what `getrusage` reports). Client CPU: the benchmark process's utime + stime per operation (store, Diesel, client library, worker threads).\n\
         * Rounds: {} rounds after a discarded 1-second warm-up round; backends and operations run in an order that rotates each round, so that the noise of the shared machine falls on all of them; medians with min–max over the rounds.\n\
         * Storage: PostgreSQL `pg_total_relation_size` (heap, TOAST, maps, indexes) after `VACUUM ANALYZE`; MariaDB `information_schema.tables` data_length + index_length after `ANALYZE TABLE` (as written, then after `OPTIMIZE TABLE`); SQLite `dbstat` (table and index b-trees) after a WAL checkpoint. *After the rounds*: the same once the update and create cells ran (dead row versions and page splits).\n\
         * Trimming: a `Config` whose clock is 400 days ahead makes every session expired; `Trim::new().run_on(database, config)` deletes them in batches of 1,000 (select ids by the `expires_at` index, delete by id with the expiry re-checked).",
        once.values().next().map_or(0, |o| o.envelope),
        once.values()
            .next()
            .map_or(0, |o| o.envelope.saturating_sub(ENVELOPE_OVERHEAD as u64)),
        ENVELOPE_OVERHEAD,
        args.sessions,
        args.workers,
        args.workers,
        args.cell.as_secs(),
        args.rounds,
    );
    println!("{out}");

    for p in prepared {
        let Prepared { target, store, .. } = p;
        drop(store);
        drop(target);
    }
}
