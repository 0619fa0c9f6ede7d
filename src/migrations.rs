//! The SQL migrations, per backend, as shipped in `migrations/<backend>/`.
//!
//! [`SessionStore::run_migrations`](crate::SessionStore::run_migrations) runs
//! them embedded; `stored-session install` copies them into an application's
//! own Diesel migrations folder; the diesel CLI runs them from this crate's
//! folders with `--migration-dir migrations/<backend>`.

use crate::backend::Backend;

/// One migration's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// Directory name, `<timestamp>_<what it does>`.
    pub name: &'static str,
    /// `up.sql`.
    pub up: &'static str,
    /// `down.sql`.
    pub down: &'static str,
    /// `metadata.toml`, for a migration that has one: `run_in_transaction =
    /// false` for a statement that cannot run in a transaction (PostgreSQL's
    /// `CREATE INDEX CONCURRENTLY`). Diesel's embedded runner and the diesel
    /// CLI both read it.
    pub metadata: Option<&'static str>,
}

/// `$dir`'s `up.sql` and `down.sql` (and `metadata.toml` when given).
macro_rules! migration {
    ($backend:literal, $name:literal) => {
        Migration {
            name: $name,
            up: include_str!(concat!("../migrations/", $backend, "/", $name, "/up.sql")),
            down: include_str!(concat!("../migrations/", $backend, "/", $name, "/down.sql")),
            metadata: None,
        }
    };
    ($backend:literal, $name:literal, metadata) => {
        Migration {
            metadata: Some(include_str!(concat!(
                "../migrations/",
                $backend,
                "/",
                $name,
                "/metadata.toml"
            ))),
            ..migration!($backend, $name)
        }
    };
}

/// The migrations that create (and then update) the `stored_sessions`
/// table on `backend`, oldest first:
///
/// | backend | migrations |
/// |---|---|
/// | SQLite, MySQL | `2026-11-27-000000_create_stored_sessions`, `2026-12-02-000000_session_expiry` |
/// | PostgreSQL | `2026-11-27-000000_create_stored_sessions`, `2026-12-01-000000_user_key_id_index`, `2026-12-02-000000_session_expiry`, `2026-12-02-000001_session_expiry_index` |
///
/// `session_expiry` adds the `expires_at` deadline column and its index to
/// a live table without locking it for long: see the README's Migrations
/// section for what it costs on a large table.
///
/// ```
/// use stored_session::{migrations, Backend};
///
/// let all = migrations::for_backend(Backend::Mysql);
/// assert!(all[0].up.contains("LONGBLOB"));
/// let pg = migrations::for_backend(Backend::Postgres);
/// assert!(pg[3].up.contains("CONCURRENTLY"));
/// assert_eq!(pg[3].metadata, Some("run_in_transaction = false\n"));
/// ```
pub fn for_backend(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => &[
            migration!("sqlite", "2026-11-27-000000_create_stored_sessions"),
            migration!("sqlite", "2026-12-02-000000_session_expiry"),
        ],
        Backend::Postgres => &[
            migration!("postgres", "2026-11-27-000000_create_stored_sessions"),
            // SQLite's and InnoDB's user_key indexes already end with the
            // row id; PostgreSQL needs it spelled out (see up.sql).
            migration!("postgres", "2026-12-01-000000_user_key_id_index"),
            // The column in a transaction; the index CONCURRENTLY, outside
            // one, in a migration of its own.
            migration!("postgres", "2026-12-02-000000_session_expiry"),
            migration!(
                "postgres",
                "2026-12-02-000001_session_expiry_index",
                metadata
            ),
        ],
        Backend::Mysql => &[
            migration!("mysql", "2026-11-27-000000_create_stored_sessions"),
            migration!("mysql", "2026-12-02-000000_session_expiry"),
        ],
    }
}

/// Writes the migrations for `backend` into `dir` (an application's Diesel
/// migrations folder), one sub-directory each (`up.sql`, `down.sql`, and
/// `metadata.toml` when the migration has one). Existing files are left
/// alone unless identical content is already there.
///
/// # Errors
///
/// [`Error::Config`](crate::Error::Config) when a file exists with other
/// content or cannot be written.
pub fn install(backend: Backend, dir: &std::path::Path) -> crate::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for m in for_backend(backend) {
        let target = dir.join(m.name);
        std::fs::create_dir_all(&target).map_err(|e| {
            crate::Error::Config(format!("cannot create {}: {e}", target.display()))
        })?;
        let files = [("up.sql", Some(m.up)), ("down.sql", Some(m.down))];
        let metadata = [("metadata.toml", m.metadata)];
        for (file, content) in files.into_iter().chain(metadata) {
            let Some(content) = content else { continue };
            let path = target.join(file);
            match std::fs::read_to_string(&path) {
                Ok(existing) if existing == content => continue,
                Ok(_) => {
                    return Err(crate::Error::Config(format!(
                        "{} exists with other content; not overwriting it",
                        path.display()
                    )))
                }
                Err(_) => {}
            }
            std::fs::write(&path, content).map_err(|e| {
                crate::Error::Config(format!("cannot write {}: {e}", path.display()))
            })?;
            written.push(path);
        }
    }
    Ok(written)
}
