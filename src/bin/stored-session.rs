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
//!
//! Exit codes: 0 success (also when the reader of the output went away, as
//! in `stored-session stats | head -2`), 1 the operation failed, 2 bad usage.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stored_session::{
    Backend, Config, Database, Key, Keyring, PoolOptions, Rotation, SessionInfo, SessionStore,
    Stats, Trim,
};

/// Maintain a stored-session database: migrations, trimming, statistics, keys.
///
/// Keys come from STORED_SESSION_KEYS: one or more base64 keys (as printed by
/// `keygen`) separated by commas or white space, the current key first. Only
/// list, revoke --user and rotate-keys need them; migrate, trim, stats and
/// revoke --all work on the table alone.
///
/// The database URL comes from DATABASE_URL or --database-url-file; both keep
/// a password out of the process list and the shell history, which
/// --database-url on the command line does not.
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
    /// Create or update the stored_sessions table (embedded migrations).
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
        /// Idle timeout, e.g. 30d, 12h, 90m, or "never" (default: 30d).
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
    /// End sessions: one user's (needs STORED_SESSION_KEYS), or everyone's.
    Revoke {
        /// End every session of this user id.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        user: Option<String>,
        /// End every session of every user.
        #[arg(long)]
        all: bool,
    },
    /// Re-encrypt every session with the current key (the first in STORED_SESSION_KEYS).
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
    /// (migrate, trim, stats, revoke --all): they need no keys.
    fn database(&self) -> Result<Database, CliError> {
        let options = PoolOptions::default().max_size(2);
        Ok(Database::open(&self.url()?, &options)?)
    }

    /// A store with the keys of STORED_SESSION_KEYS, for the commands that
    /// open sessions or find users (list, revoke --user, rotate-keys).
    fn store(&self) -> Result<SessionStore, CliError> {
        let keyring = Keyring::from_env()?;
        Ok(SessionStore::builder(keyring).build(self.database()?))
    }
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
            let db = target.database()?;
            db.run_migrations()?;
            writeln!(out, "Migrations are up to date ({})", db.backend())?;
        }
        Command::Trim {
            idle_timeout,
            max_lifetime,
            batch_size,
            dry_run,
        } => {
            let db = target.database()?;
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
            let db = target.database()?;
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
                (true, _) => target.database()?.revoke_all()?,
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
                    "ip": i.ip, "user_agent": i.user_agent, "fields": i.fields,
                })
            })
            .collect();
        return writeln!(out, "{}", serde_json::Value::Array(items));
    }
    for i in list {
        writeln!(
            out,
            "{}  created {}  last active {}  ip {}  agent {}",
            i.handle,
            i.created_at.to_rfc3339(),
            i.last_active.to_rfc3339(),
            i.ip.as_deref().unwrap_or("-"),
            i.user_agent.as_deref().unwrap_or("-")
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
