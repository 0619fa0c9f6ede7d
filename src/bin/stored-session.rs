//! `stored-session`: maintenance from a shell (migrations, trimming,
//! statistics, keys). Built with the `cli` feature:
//!
//! ```sh
//! cargo install stored-session --features cli,postgres,mysql
//! DATABASE_URL=postgres://… stored-session trim --dry-run
//! ```
//!
//! Only `list`, `revoke --user` and `rotate-keys` read keys
//! (`STORED_SESSION_KEYS`); the maintenance commands open the database alone.
//! Only `migrate` creates a SQLite database file; every other command
//! refuses a file that does not exist.
//!
//! Exit codes: 0 success (also when the reader of the output went away, as
//! in `stored-session stats | head -2`), 1 the operation failed (also
//! `rotate-keys` leaving sessions that no key on the ring opens), 2 bad
//! usage.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stored_session::{
    Backend, Config, Database, Key, Keyring, PoolOptions, Rotation, SessionInfo, SessionStore,
    Stats, Trim,
};

/// Maintain a stored-session database: migrations, trimming, statistics, keys.
///
/// Keys come from STORED_SESSION_KEYS: one or more keys, base64 (as printed by
/// `keygen`) or 64 hex digits, separated by commas or white space, the current key first. Only
/// list, revoke --user and rotate-keys need them; migrate, trim, stats and
/// revoke --all work on the table alone.
///
/// The database URL comes from DATABASE_URL or --database-url-file; both keep
/// a password out of the process list and the shell history, which
/// --database-url on the command line does not. Only migrate creates a
/// SQLite file; the other commands refuse one that does not exist.
#[derive(Parser)]
#[command(name = "stored-session", version)]
struct Cli {
    /// Database URL: postgres://…, mysql://…, sqlite://path or a SQLite file
    /// path. Prefer DATABASE_URL or --database-url-file when it holds a password.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,

    /// Read the database URL from this file (its first line; for secrets
    /// mounted as files). Takes precedence over DATABASE_URL.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        conflicts_with = "database_url"
    )]
    database_url_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update the stored_sessions table (embedded migrations);
    /// prints the migrations it applied.
    Migrate,
    /// Write the migration files into an application's Diesel migrations folder.
    Install {
        /// Which database's SQL to write.
        #[arg(long, value_enum)]
        backend: BackendArg,
        /// The application's migrations directory.
        #[arg(long, default_value = "migrations")]
        dir: PathBuf,
    },
    /// Delete expired sessions in batches.
    Trim {
        /// Idle timeout, e.g. 30d, 12h, 90m, or "never" (default: 30d), for
        /// sessions without a deadline of their own (last written before the
        /// session_expiry migration); the others are trimmed at their deadline.
        #[arg(long, value_parser = parse_limit)]
        idle_timeout: Option<Limit>,
        /// Absolute lifetime, e.g. 30d, or "never" (default: 30d).
        #[arg(long, value_parser = parse_limit)]
        max_lifetime: Option<Limit>,
        /// Rows per batch.
        #[arg(long, default_value_t = stored_session::DEFAULT_BATCH_SIZE)]
        batch_size: usize,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Live and expired counts, activity range, payload sizes.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a new random key (base64) for STORED_SESSION_KEYS.
    Keygen,
    /// List a user's live sessions, newest first, one page at a time (needs STORED_SESSION_KEYS).
    List {
        /// The application's user id, as passed to `Session::set_user`.
        #[arg(long)]
        user: String,
        /// Most sessions to print (1 to 1000).
        #[arg(long, default_value_t = stored_session::Page::DEFAULT_LIMIT)]
        limit: u32,
        /// Start after this cursor (printed by the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// End sessions: one user's (--user ID, needs STORED_SESSION_KEYS), or
    /// everyone's (--all).
    #[command(group(ArgGroup::new("whose").args(["user", "all"]).required(true)))]
    Revoke {
        /// End every session of this user id.
        #[arg(long, value_name = "ID")]
        user: Option<String>,
        /// End every session of every user.
        #[arg(long)]
        all: bool,
    },
    /// Re-encrypt every session with the current key (the first in
    /// STORED_SESSION_KEYS). Exits with 1 when some sessions could not be
    /// opened with any key on the ring.
    RotateKeys {
        /// Rows per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Continue an interrupted run after this row id (printed as it goes).
        #[arg(long, default_value_t = 0)]
        resume_after: i64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Mysql,
}

/// A duration limit; `None` means disabled.
#[derive(Debug, Clone, Copy)]
struct Limit(Option<Duration>);

fn parse_limit(text: &str) -> Result<Limit, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "never" | "none" | "off" => Ok(Limit(None)),
        t => humantime::parse_duration(t)
            .map(|d| Limit(Some(d)))
            .map_err(|e| format!("{e} (use e.g. 30d, 12h, 90m or never)")),
    }
}

/// Everything a command can fail with. `main` prints it as one line,
/// `error: …`, and exits with [`CliError::exit_code`]. No variant's text
/// holds a password or a key: the library scrubs database URLs from its
/// errors, and keys are never part of one.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The store or the database failed (or STORED_SESSION_KEYS is unset or
    /// malformed).
    #[error(transparent)]
    Library(#[from] stored_session::Error),
    /// No database URL was given in any of the three ways.
    #[error("no database: set DATABASE_URL, or pass --database-url-file or --database-url")]
    NoDatabase,
    /// --database-url-file could not be read.
    #[error("cannot read --database-url-file {}: {source}", path.display())]
    UrlFile {
        /// The file named on the command line.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// --database-url-file holds no URL.
    #[error("--database-url-file {} is empty", path.display())]
    EmptyUrlFile {
        /// The file named on the command line.
        path: PathBuf,
    },
    /// Arguments that clap accepted but that do not make a command.
    #[error("{0}")]
    Usage(&'static str),
    /// A command other than `migrate` named a SQLite file that does not
    /// exist (it would have created an empty one).
    #[error("no SQLite database at {} (run `stored-session migrate` to create it)", path.display())]
    NoSqliteFile {
        /// The file the URL names.
        path: PathBuf,
    },
    /// `rotate-keys` found sessions that no key of STORED_SESSION_KEYS
    /// opens: they were left as they are.
    #[error(
        "{count} session(s) could not be opened with STORED_SESSION_KEYS and were left as they \
         are: if the key that sealed them is missing from the ring, add it after the current \
         one and run rotate-keys again (until then they cannot be loaded)"
    )]
    Unreadable {
        /// How many.
        count: u64,
    },
    /// Writing the command's output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

impl CliError {
    /// 2 for bad usage (as clap's own usage errors), 1 for everything else.
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`stored-session stats | head -2`): it had
        // all it wanted, and the command itself succeeded.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // One line: driver messages may span several.
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Where the database is: --database-url-file, or --database-url /
/// DATABASE_URL.
struct Target {
    file: Option<PathBuf>,
    url: Option<String>,
}

impl Target {
    /// The database URL; the file takes precedence (clap rejects both).
    fn url(&self) -> Result<String, CliError> {
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::UrlFile {
                path: path.clone(),
                source,
            })?;
            return text
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| CliError::EmptyUrlFile { path: path.clone() });
        }
        self.url.clone().ok_or(CliError::NoDatabase)
    }

    /// The database alone, for the commands that decrypt nothing
    /// (migrate, trim, stats, revoke --all): they need no keys. Only
    /// `migrate` (`create`) may create a SQLite file; for the others, a
    /// missing one is an error, and SQLite is told not to create it.
    fn database(&self, create: bool) -> Result<Database, CliError> {
        let options = PoolOptions::default().max_size(2);
        let mut url = self.url()?;
        if !create {
            if let Some(file) = sqlite_file(&url) {
                if !file.path.exists() {
                    return Err(CliError::NoSqliteFile { path: file.path });
                }
                url = file.existing;
            }
        }
        Ok(Database::open(&url, &options)?)
    }

    /// A store with the keys of STORED_SESSION_KEYS, for the commands that
    /// open sessions or find users (list, revoke --user, rotate-keys), on
    /// an existing database.
    fn store(&self) -> Result<SessionStore, CliError> {
        let keyring = Keyring::from_env()?;
        Ok(SessionStore::builder(keyring).build(self.database(false)?))
    }
}

/// A SQLite database URL that names a file.
#[derive(Debug, PartialEq)]
struct SqliteFile {
    /// The file.
    path: PathBuf,
    /// A URL for the same file that SQLite opens only if it exists
    /// (`mode=rw`, unless the URL already sets a mode).
    existing: String,
}

/// The file a SQLite URL names, read as `Database::open` reads it (plain
/// paths, `sqlite://path`, `sqlite:path`, `file:` URIs); `None` for the
/// servers' URLs and in-memory databases.
fn sqlite_file(url: &str) -> Option<SqliteFile> {
    let lower = url.to_ascii_lowercase();
    if lower.contains("://") && !lower.starts_with("sqlite://") && !lower.starts_with("file:") {
        return None; // a server, or a scheme Database::open rejects
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if rest.is_empty() || rest == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    let Some(uri) = rest.strip_prefix("file:") else {
        // A path: as a URI, with the characters a URI reads specially escaped.
        let mut escaped = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '%' => escaped.push_str("%25"),
                '?' => escaped.push_str("%3F"),
                '#' => escaped.push_str("%23"),
                c => escaped.push(c),
            }
        }
        let authority = if rest.starts_with('/') { "//" } else { "" };
        return Some(SqliteFile {
            path: PathBuf::from(rest),
            existing: format!("file:{authority}{escaped}?mode=rw"),
        });
    };
    // A URI (as SQLite reads it): file:path, file:///path or
    // file://localhost/path, then ?query and #fragment.
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let (path, tail) = uri.split_at(end);
    let path = match path.strip_prefix("//") {
        Some(authority_and_path) => match authority_and_path.find('/') {
            Some(slash) => &authority_and_path[slash..],
            None => return None, // no path: let SQLite say what is wrong
        },
        None => path,
    };
    let query = tail
        .strip_prefix('?')
        .map(|q| q.split('#').next().unwrap_or(""));
    let has_mode = query.is_some_and(|q| q.split('&').any(|p| p.starts_with("mode=")));
    let existing = if has_mode {
        url.to_owned()
    } else {
        let (before_fragment, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
        let separator = if query.is_some() { '&' } else { '?' };
        format!("{before_fragment}{separator}mode=rw{fragment}")
    };
    Some(SqliteFile {
        path: PathBuf::from(percent_decode(path)?),
        existing,
    })
}

/// `%XX` escapes decoded; `None` when they do not make UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(u8::try_from(hex(h)? * 16 + hex(l)?).ok()?);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    let target = Target {
        file: cli.database_url_file,
        url: cli.database_url,
    };
    match cli.command {
        Command::Keygen => {
            writeln!(out, "{}", Key::generate().to_base64().as_str())?;
        }
        Command::Install { backend, dir } => {
            let backend = match backend {
                BackendArg::Sqlite => Backend::Sqlite,
                BackendArg::Postgres => Backend::Postgres,
                BackendArg::Mysql => Backend::Mysql,
            };
            let written = stored_session::migrations::install(backend, &dir)?;
            if written.is_empty() {
                writeln!(out, "Migrations already installed in {}", dir.display())?;
            }
            for path in written {
                writeln!(out, "wrote {}", path.display())?;
            }
        }
        Command::Migrate => {
            let db = target.database(true)?;
            let applied = db.run_migrations()?;
            for name in &applied {
                writeln!(out, "Applied {name}")?;
            }
            if applied.is_empty() {
                let earlier = stored_session::migrations::for_backend(db.backend()).len();
                writeln!(
                    out,
                    "Migrations are up to date ({}, {earlier} applied earlier)",
                    db.backend()
                )?;
            }
        }
        Command::Trim {
            idle_timeout,
            max_lifetime,
            batch_size,
            dry_run,
        } => {
            let db = target.database(false)?;
            let mut limits = Config::default();
            if let Some(Limit(idle)) = idle_timeout {
                limits = limits.idle_timeout(idle);
            }
            if let Some(Limit(lifetime)) = max_lifetime {
                limits = limits.max_lifetime(lifetime);
            }
            let trim = Trim::new().batch_size(batch_size);
            let expired = trim.count_on(&db, &limits)?;
            if dry_run {
                writeln!(out, "Would trim {expired} session(s)")?;
                return Ok(out.flush()?);
            }
            let bar = progress(expired, "trimming");
            let ticker = bar.clone();
            let report = trim
                .on_batch(move |so_far| ticker.set_position(so_far.deleted))
                .run_on(&db, &limits)?;
            bar.finish_and_clear();
            writeln!(out, "{report}")?;
        }
        Command::Stats { json } => {
            let db = target.database(false)?;
            let stats = db.stats(&Config::default())?;
            print_stats(out, db.backend(), &stats, json)?;
        }
        Command::List {
            user,
            limit,
            after,
            json,
        } => {
            let store = target.store()?;
            let page = stored_session::Page {
                limit,
                after: after.map(stored_session::Cursor::new),
            };
            let listed = store.sessions_of(&user, None, page)?;
            if let Some(next) = &listed.next {
                // On stderr, so stdout stays one JSON array or the list.
                writeln!(io::stderr(), "more sessions: --after {next}")?;
            }
            print_sessions(out, &listed.sessions, json)?;
        }
        Command::Revoke { user, all } => {
            let n = match (all, user) {
                (true, _) => target.database(false)?.revoke_all()?,
                (false, Some(user)) => target.store()?.revoke_user(&user)?,
                // clap requires one of the two.
                (false, None) => return Err(CliError::Usage("revoke needs --user ID or --all")),
            };
            writeln!(out, "Revoked {n} session(s)")?;
        }
        Command::RotateKeys {
            batch_size,
            resume_after,
        } => {
            let store = target.store()?;
            let bar = progress(0, "re-encrypting");
            let ticker = bar.clone();
            let report = Rotation::new()
                .batch_size(batch_size)
                .resume_after(resume_after)
                .on_batch(move |so_far| {
                    ticker.set_position(so_far.scanned);
                    ticker.set_message(format!("last id {}", so_far.last_id));
                })
                .run(&store)?;
            bar.finish_and_clear();
            writeln!(out, "{report} (last id {})", report.last_id)?;
            if report.unreadable > 0 {
                // They will never open (nor be rotated) with this ring.
                out.flush()?;
                return Err(CliError::Unreadable {
                    count: report.unreadable,
                });
            }
        }
    }
    Ok(out.flush()?)
}

/// `stats`, as text or as one JSON object.
fn print_stats(
    out: &mut impl Write,
    backend: Backend,
    stats: &Stats,
    json: bool,
) -> io::Result<()> {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
    let p = &stats.payload_bytes;
    if json {
        let value = serde_json::json!({
            "backend": backend.to_string(),
            "live": stats.live,
            "expired": stats.expired,
            "oldest_activity": time(stats.oldest_activity),
            "newest_activity": time(stats.newest_activity),
            "payload_bytes": percentiles(p),
            "users": stats.users,
            "sessions_per_user": percentiles(&stats.sessions_per_user),
            "created_per_hour": stats.created_per_hour,
            "active_per_hour": stats.active_per_hour,
        });
        return writeln!(out, "{value}");
    }
    let none = || "-".to_string();
    writeln!(out, "backend          {backend}")?;
    writeln!(out, "live sessions    {}", stats.live)?;
    writeln!(out, "expired          {}", stats.expired)?;
    writeln!(
        out,
        "oldest activity  {}",
        time(stats.oldest_activity).unwrap_or_else(none)
    )?;
    writeln!(
        out,
        "newest activity  {}",
        time(stats.newest_activity).unwrap_or_else(none)
    )?;
    writeln!(
        out,
        "payload bytes    min {} / p50 {} / p90 {} / p99 {} / max {}",
        p.min, p.p50, p.p90, p.p99, p.max
    )?;
    let u = &stats.sessions_per_user;
    writeln!(out, "users            {}", stats.users)?;
    writeln!(
        out,
        "sessions/user    min {} / p50 {} / p90 {} / p99 {} / max {}",
        u.min, u.p50, u.p90, u.p99, u.max
    )?;
    writeln!(
        out,
        "created/hour     {}",
        sparkline(&stats.created_per_hour)
    )?;
    writeln!(
        out,
        "active/hour      {}",
        sparkline(&stats.active_per_hour)
    )
}

/// `list`, as text or as one JSON array.
fn print_sessions(out: &mut impl Write, list: &[SessionInfo], json: bool) -> io::Result<()> {
    if json {
        let items: Vec<_> = list
            .iter()
            .map(|i| {
                serde_json::json!({
                    "handle": i.handle.as_str(),
                    "created_at": i.created_at.to_rfc3339(),
                    "last_active": i.last_active.to_rfc3339(),
                    "ip": i.ip, "user_agent": i.user_agent,
                    "device": i.device,
                    "location": i.location.as_ref().map(|l| serde_json::json!({
                        "country_code": l.country_code, "country": l.country, "city": l.city,
                    })),
                    "fields": i.fields,
                })
            })
            .collect();
        return writeln!(out, "{}", serde_json::Value::Array(items));
    }
    for i in list {
        writeln!(
            out,
            "{}  created {}  last active {}  ip {}  agent {}  device {}  location {}",
            i.handle,
            i.created_at.to_rfc3339(),
            i.last_active.to_rfc3339(),
            i.ip.as_deref().unwrap_or("-"),
            i.user_agent.as_deref().unwrap_or("-"),
            i.device.as_deref().unwrap_or("-"),
            i.location
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string)
        )?;
    }
    writeln!(out, "{} session(s)", list.len())
}

fn percentiles(p: &stored_session::Percentiles) -> serde_json::Value {
    serde_json::json!({
        "count": p.count, "min": p.min, "p50": p.p50, "p90": p.p90, "p99": p.p99, "max": p.max,
    })
}

/// The last 24 hours as counts, oldest first: `3 0 12 …`.
fn sparkline(hours: &[u64; 24]) -> String {
    hours
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A progress bar on a terminal's stderr; hidden otherwise.
fn progress(total: u64, what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target((total > 0).then_some(total), target);
    let template = if total > 0 {
        "{prefix} [{bar:40}] {pos}/{len} {per_sec} {msg}"
    } else {
        "{prefix} {spinner} {pos} {per_sec} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::{sqlite_file, SqliteFile};

    fn file(path: &str, existing: &str) -> Option<SqliteFile> {
        Some(SqliteFile {
            path: path.into(),
            existing: existing.into(),
        })
    }

    #[test]
    fn the_file_a_sqlite_url_names() {
        assert_eq!(sqlite_file("s.db"), file("s.db", "file:s.db?mode=rw"));
        assert_eq!(
            sqlite_file("sqlite:///tmp/a b.db"),
            file("/tmp/a b.db", "file:///tmp/a b.db?mode=rw")
        );
        assert_eq!(
            sqlite_file("sqlite://data/x?y#z%.db"),
            file("data/x?y#z%.db", "file:data/x%3Fy%23z%25.db?mode=rw")
        );
        assert_eq!(
            sqlite_file("sqlite:s.db"),
            file("s.db", "file:s.db?mode=rw")
        );
        assert_eq!(
            sqlite_file("file:///tmp/a%20b.db?cache=shared#f"),
            file("/tmp/a b.db", "file:///tmp/a%20b.db?cache=shared&mode=rw#f")
        );
        assert_eq!(
            sqlite_file("file://localhost/tmp/s.db"),
            file("/tmp/s.db", "file://localhost/tmp/s.db?mode=rw")
        );
        assert_eq!(
            sqlite_file("sqlite:file:data/s.db"),
            file("data/s.db", "sqlite:file:data/s.db?mode=rw")
        );
        // A mode the URL sets is left alone (the file must exist anyway).
        assert_eq!(
            sqlite_file("file:s.db?mode=ro"),
            file("s.db", "file:s.db?mode=ro")
        );
        for not_a_file in [
            "sqlite::memory:",
            ":memory:",
            "sqlite://",
            "file:m?mode=memory&cache=shared",
            "postgres://u@h/db",
            "MYSQL://u@h/db",
            "redis://h",
        ] {
            assert_eq!(sqlite_file(not_a_file), None, "{not_a_file}");
        }
    }
}
