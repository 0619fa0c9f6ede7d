//! `stored-session`: maintenance from a shell (migrations, trimming,
//! statistics, keys). Built with the `cli` feature:
//!
//! ```sh
//! cargo install stored-session --features cli,postgres,mysql
//! DATABASE_URL=postgres://… stored-session trim --dry-run
//! ```
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad usage.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stored_session::{Backend, Key, Keyring, Rotation, SessionStore, Trim};

/// Maintain a stored-session database: migrations, trimming, statistics, keys.
///
/// Keys come from STORED_SESSION_KEYS: one or more base64 keys (as printed by
/// `keygen`) separated by commas or white space, the current key first.
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {}", message.replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

/// The database URL, from --database-url-file, --database-url or DATABASE_URL.
fn database_url(file: Option<&PathBuf>, url: Option<&String>) -> Result<String, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --database-url-file {}: {e}", path.display()))?;
        return text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("--database-url-file {} is empty", path.display()));
    }
    url.cloned().ok_or_else(|| {
        "no database: set DATABASE_URL, or pass --database-url-file or --database-url".to_string()
    })
}

fn run(cli: Cli) -> Result<(), String> {
    let (url_file, url_arg) = (cli.database_url_file, cli.database_url);
    let url = || database_url(url_file.as_ref(), url_arg.as_ref());
    // Commands that never decrypt get a throw-away key.
    let open = |keyring: Keyring| -> Result<SessionStore, String> {
        SessionStore::builder(keyring)
            .pool(stored_session::PoolOptions::default().max_size(2))
            .open(&url()?)
            .map_err(|e| e.to_string())
    };
    match cli.command {
        Command::Keygen => {
            println!("{}", Key::generate().to_base64().as_str());
        }
        Command::Install { backend, dir } => {
            let backend = match backend {
                BackendArg::Sqlite => Backend::Sqlite,
                BackendArg::Postgres => Backend::Postgres,
                BackendArg::Mysql => Backend::Mysql,
            };
            let written =
                stored_session::migrations::install(backend, &dir).map_err(|e| e.to_string())?;
            if written.is_empty() {
                println!("Migrations already installed in {}", dir.display());
            }
            for path in written {
                println!("wrote {}", path.display());
            }
        }
        Command::Migrate => {
            let store = open(Keyring::generate())?;
            store.run_migrations().map_err(|e| e.to_string())?;
            println!("Migrations are up to date ({})", store.database().backend());
        }
        Command::Trim {
            idle_timeout,
            max_lifetime,
            batch_size,
            dry_run,
        } => {
            let store = open(Keyring::generate())?;
            let mut trim = Trim::new().batch_size(batch_size);
            if let Some(Limit(idle)) = idle_timeout {
                trim = trim.idle_timeout(idle);
            }
            if let Some(Limit(lifetime)) = max_lifetime {
                trim = trim.max_lifetime(lifetime);
            }
            let expired = trim.count(&store).map_err(|e| e.to_string())?;
            if dry_run {
                println!("Would trim {expired} session(s)");
                return Ok(());
            }
            let bar = progress(expired, "trimming");
            let ticker = bar.clone();
            let report = trim
                .on_batch(move |so_far| ticker.set_position(so_far.deleted))
                .run(&store)
                .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            println!("{report}");
        }
        Command::Stats { json } => {
            let store = open(Keyring::generate())?;
            let stats = store.stats().map_err(|e| e.to_string())?;
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
            let p = stats.payload_bytes;
            if json {
                let value = serde_json::json!({
                    "backend": store.database().backend().to_string(),
                    "live": stats.live,
                    "expired": stats.expired,
                    "oldest_activity": time(stats.oldest_activity),
                    "newest_activity": time(stats.newest_activity),
                    "payload_bytes": percentiles(&p),
                    "users": stats.users,
                    "sessions_per_user": percentiles(&stats.sessions_per_user),
                    "created_per_hour": stats.created_per_hour,
                    "active_per_hour": stats.active_per_hour,
                });
                println!("{value}");
            } else {
                let none = || "-".to_string();
                println!("backend          {}", store.database().backend());
                println!("live sessions    {}", stats.live);
                println!("expired          {}", stats.expired);
                println!(
                    "oldest activity  {}",
                    time(stats.oldest_activity).unwrap_or_else(none)
                );
                println!(
                    "newest activity  {}",
                    time(stats.newest_activity).unwrap_or_else(none)
                );
                println!(
                    "payload bytes    min {} / p50 {} / p90 {} / p99 {} / max {}",
                    p.min, p.p50, p.p90, p.p99, p.max
                );
                let u = stats.sessions_per_user;
                println!("users            {}", stats.users);
                println!(
                    "sessions/user    min {} / p50 {} / p90 {} / p99 {} / max {}",
                    u.min, u.p50, u.p90, u.p99, u.max
                );
                println!("created/hour     {}", sparkline(&stats.created_per_hour));
                println!("active/hour      {}", sparkline(&stats.active_per_hour));
            }
        }
        Command::List {
            user,
            limit,
            after,
            json,
        } => {
            let store = open(Keyring::from_env().map_err(|e| e.to_string())?)?;
            let page = stored_session::Page {
                limit,
                after: after.map(stored_session::Cursor::new),
            };
            let listed = store
                .sessions_of(&user, None, page)
                .map_err(|e| e.to_string())?;
            if let Some(next) = &listed.next {
                // On stderr, so stdout stays one JSON array or the list.
                eprintln!("more sessions: --after {next}");
            }
            let list = listed.sessions;
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
                println!("{}", serde_json::Value::Array(items));
            } else {
                for i in &list {
                    println!(
                        "{}  created {}  last active {}  ip {}  agent {}",
                        i.handle,
                        i.created_at.to_rfc3339(),
                        i.last_active.to_rfc3339(),
                        i.ip.as_deref().unwrap_or("-"),
                        i.user_agent.as_deref().unwrap_or("-")
                    );
                }
                println!("{} session(s)", list.len());
            }
        }
        Command::Revoke { user, all } => {
            let n = if all {
                open(Keyring::generate())?.revoke_all()
            } else {
                let user = user.unwrap_or_default();
                open(Keyring::from_env().map_err(|e| e.to_string())?)?.revoke_user(&user)
            }
            .map_err(|e| e.to_string())?;
            println!("Revoked {n} session(s)");
        }
        Command::RotateKeys {
            batch_size,
            resume_after,
        } => {
            let keyring = Keyring::from_env().map_err(|e| e.to_string())?;
            let store = open(keyring)?;
            let bar = progress(0, "re-encrypting");
            let ticker = bar.clone();
            let report = Rotation::new()
                .batch_size(batch_size)
                .resume_after(resume_after)
                .on_batch(move |so_far| {
                    ticker.set_position(so_far.scanned);
                    ticker.set_message(format!("last id {}", so_far.last_id));
                })
                .run(&store)
                .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            println!("{report} (last id {})", report.last_id);
        }
    }
    Ok(())
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
