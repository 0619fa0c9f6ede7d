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
}

const NAME: &str = "2026-11-27-000000_create_stored_sessions";

/// The migrations that create (and then update) the `stored_sessions`
/// table on `backend`, oldest first.
///
/// ```
/// use stored_session::{migrations, Backend};
///
/// let all = migrations::for_backend(Backend::Mysql);
/// assert!(all[0].up.contains("LONGBLOB"));
/// ```
pub fn for_backend(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => &[Migration {
            name: NAME,
            up: include_str!(
                "../migrations/sqlite/2026-11-27-000000_create_stored_sessions/up.sql"
            ),
            down: include_str!(
                "../migrations/sqlite/2026-11-27-000000_create_stored_sessions/down.sql"
            ),
        }],
        Backend::Postgres => &[
            Migration {
                name: NAME,
                up: include_str!(
                    "../migrations/postgres/2026-11-27-000000_create_stored_sessions/up.sql"
                ),
                down: include_str!(
                    "../migrations/postgres/2026-11-27-000000_create_stored_sessions/down.sql"
                ),
            },
            // SQLite's and InnoDB's user_key indexes already end with the
            // row id; PostgreSQL needs it spelled out (see up.sql).
            Migration {
                name: "2026-12-01-000000_user_key_id_index",
                up: include_str!(
                    "../migrations/postgres/2026-12-01-000000_user_key_id_index/up.sql"
                ),
                down: include_str!(
                    "../migrations/postgres/2026-12-01-000000_user_key_id_index/down.sql"
                ),
            },
        ],
        Backend::Mysql => &[Migration {
            name: NAME,
            up: include_str!("../migrations/mysql/2026-11-27-000000_create_stored_sessions/up.sql"),
            down: include_str!(
                "../migrations/mysql/2026-11-27-000000_create_stored_sessions/down.sql"
            ),
        }],
    }
}

/// Writes the migrations for `backend` into `dir` (an application's Diesel
/// migrations folder), one sub-directory each. Existing files are left alone
/// unless identical content is already there.
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
        for (file, content) in [("up.sql", m.up), ("down.sql", m.down)] {
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
