//! The real `stored-session` binary against every backend.
#![cfg(feature = "cli")]

mod common;

use std::process::{Command, Output};

use common::{count, insert_raw, rows, Harness};
use stored_session::{migrations, CookieAction, Key, Keyring, SessionStore};

const BIN: &str = env!("CARGO_BIN_EXE_stored-session");

fn cli(url: Option<&str>, keys: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("STORED_SESSION_KEYS");
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url);
    }
    if let Some(keys) = keys {
        cmd.env("STORED_SESSION_KEYS", keys);
    }
    cmd.output().expect("run stored-session")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn system_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What `migrate` prints on a database without the table: the migrations
/// it applied, one line each.
fn applied_all(h: &Harness) -> String {
    migrations::for_backend(h.backend)
        .iter()
        .map(|m| format!("Applied {}\n", m.name))
        .collect()
}

/// What `migrate` prints when there was nothing to do.
fn up_to_date(h: &Harness) -> String {
    format!(
        "Migrations are up to date ({}, {} applied earlier)\n",
        h.backend,
        migrations::for_backend(h.backend).len()
    )
}

/// `migrate` says what it applied, and that there was nothing to do when
/// there was not.
fn migrate_creates_the_table(h: &Harness) {
    let out = stdout(&cli(Some(&h.url), None, &["migrate"]));
    assert_eq!(out, applied_all(h));
    assert!(out.contains("Applied 2026-11-27-000000_create_stored_sessions\n"));
    // Idempotent.
    let out = stdout(&cli(Some(&h.url), None, &["migrate"]));
    assert_eq!(out, up_to_date(h));
    // The table works for an unmigrated store opened on it.
    let store = SessionStore::builder(Keyring::generate())
        .open(&h.url)
        .unwrap();
    let mut s = store.load(None).unwrap();
    s.insert("k", &1).unwrap();
    assert!(matches!(
        store.save(&mut s).unwrap(),
        CookieAction::Set(_, _)
    ));
}

fn trim_dry_run_then_trim_in_batches(h: &Harness) {
    stdout(&cli(Some(&h.url), None, &["migrate"]));
    let store = SessionStore::builder(Keyring::generate())
        .open(&h.url)
        .unwrap();
    let now = system_now();
    insert_raw(store.database(), 25, now - 40 * 86_400, now - 40 * 86_400);
    insert_raw(store.database(), 3, now - 60, now - 60);
    let out = stdout(&cli(Some(&h.url), None, &["trim", "--dry-run"]));
    assert_eq!(out.trim(), "Would trim 25 session(s)");
    assert_eq!(count(store.database()), 28);
    let out = stdout(&cli(Some(&h.url), None, &["trim", "--batch-size", "10"]));
    assert_eq!(out.trim(), "Trimmed 25 session(s) in 3 batch(es)");
    assert_eq!(count(store.database()), 3);
    // Overrides: rows idle for a minute go with --idle-timeout 30s.
    let out = stdout(&cli(
        Some(&h.url),
        None,
        &["trim", "--idle-timeout", "30s", "--max-lifetime", "never"],
    ));
    assert_eq!(out.trim(), "Trimmed 3 session(s) in 1 batch(es)");
}

fn stats_as_text_and_json(h: &Harness) {
    stdout(&cli(Some(&h.url), None, &["migrate"]));
    let store = SessionStore::builder(Keyring::generate())
        .open(&h.url)
        .unwrap();
    let now = system_now();
    insert_raw(store.database(), 4, now - 40 * 86_400, now - 40 * 86_400);
    for i in 0..3 {
        let mut s = store.load(None).unwrap();
        s.insert("v", &"x".repeat(100 * (i + 1))).unwrap();
        let _ = store.save(&mut s).unwrap();
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&cli(Some(&h.url), None, &["stats", "--json"]))).unwrap();
    assert_eq!(json["live"], 3);
    assert_eq!(json["expired"], 4);
    assert_eq!(json["payload_bytes"]["count"], 3);
    let sizes: Vec<u64> = rows(store.database())
        .iter()
        .filter(|r| r.updated_at > now - 3600)
        .map(|r| r.data.len() as u64)
        .collect();
    assert_eq!(json["payload_bytes"]["max"], *sizes.iter().max().unwrap());
    let text = stdout(&cli(Some(&h.url), None, &["stats"]));
    assert!(text.contains("live sessions    3"), "{text}");
    assert!(text.contains("expired          4"), "{text}");
}

fn keygen_and_rotate_keys(h: &Harness) {
    let k1 = stdout(&cli(None, None, &["keygen"])).trim().to_owned();
    let k2 = stdout(&cli(None, None, &["keygen"])).trim().to_owned();
    assert_ne!(k1, k2);
    let (old, new) = (
        Key::from_base64(&k1).unwrap(),
        Key::from_base64(&k2).unwrap(),
    );
    stdout(&cli(Some(&h.url), None, &["migrate"]));
    let old_store = SessionStore::builder(Keyring::new(old.clone()))
        .open(&h.url)
        .unwrap();
    let mut cookies = Vec::new();
    for i in 0..12u32 {
        let mut s = old_store.load(None).unwrap();
        s.insert("i", &i).unwrap();
        if let CookieAction::Set(id, _) = old_store.save(&mut s).unwrap() {
            cookies.push(id.as_cookie_value().to_owned());
        }
    }
    let keys = format!("{k2},{k1}");
    let out = stdout(&cli(
        Some(&h.url),
        Some(&keys),
        &["rotate-keys", "--batch-size", "5"],
    ));
    assert!(
        out.starts_with("Re-encrypted 12 session(s); 0 already current"),
        "{out}"
    );
    // Again: nothing to do, and nothing unreadable.
    let out = stdout(&cli(Some(&h.url), Some(&keys), &["rotate-keys"]));
    assert!(
        out.starts_with("Re-encrypted 0 session(s); 12 already current, 0 unreadable"),
        "{out}"
    );
    for r in rows(old_store.database()) {
        assert_eq!(
            u32::from_be_bytes(r.data[2..6].try_into().unwrap()),
            new.id()
        );
    }
    let new_only = SessionStore::builder(Keyring::new(new))
        .open(&h.url)
        .unwrap();
    for (i, c) in cookies.iter().enumerate() {
        assert_eq!(
            new_only.load(Some(c)).unwrap().get::<u32>("i").unwrap(),
            Some(i as u32)
        );
    }
    // No key in the environment: a clear one-line error, exit 1.
    let out = cli(Some(&h.url), None, &["rotate-keys"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STORED_SESSION_KEYS"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
}

fn list_and_revoke_users(h: &Harness) {
    let key = Key::generate();
    let keys = key.to_base64().to_string();
    stdout(&cli(Some(&h.url), None, &["migrate"]));
    let store = SessionStore::builder(Keyring::new(key))
        .open(&h.url)
        .unwrap();
    let sign_in = |user: &str| {
        let mut s = store.load(None).unwrap();
        s.set_user(user);
        s.set_meta("device", Some("cli-test"));
        let _ = store.save(&mut s).unwrap();
    };
    for _ in 0..2 {
        sign_in("u-1");
    }
    sign_in("u-2");
    sign_in("u-3");
    let out = stdout(&cli(Some(&h.url), Some(&keys), &["list", "--user", "u-1"]));
    assert_eq!(out.lines().last(), Some("2 session(s)"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&cli(
        Some(&h.url),
        Some(&keys),
        &["list", "--user", "u-1", "--json"],
    )))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["fields"]["device"], "cli-test");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&cli(Some(&h.url), None, &["stats", "--json"]))).unwrap();
    assert_eq!(json["users"], 3);
    assert_eq!(json["sessions_per_user"]["max"], 2);
    let out = stdout(&cli(
        Some(&h.url),
        Some(&keys),
        &["revoke", "--user", "u-1"],
    ));
    assert_eq!(out.trim(), "Revoked 2 session(s)");
    assert_eq!(count(store.database()), 2);
    let out = stdout(&cli(Some(&h.url), None, &["revoke", "--all"]));
    assert_eq!(out.trim(), "Revoked 2 session(s)");
    assert_eq!(count(store.database()), 0);
    // Usage errors: neither or both of --user and --all. Neither names both.
    let out = cli(Some(&h.url), Some(&keys), &["revoke"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--all") && err.contains("--user"), "{err}");
    assert_eq!(
        cli(
            Some(&h.url),
            Some(&keys),
            &["revoke", "--all", "--user", "x"]
        )
        .status
        .code(),
        Some(2)
    );
}

/// migrate, trim, stats and revoke --all open the database alone: they
/// work with no STORED_SESSION_KEYS and with one that holds no key (so they
/// never read it), on sessions written under keys the CLI never sees. The
/// commands that open sessions do read it, and fail without it.
fn maintenance_commands_need_no_keys(h: &Harness) {
    for (round, keys) in [None, Some("not-a-key")].into_iter().enumerate() {
        let run = |args: &[&str]| cli(Some(&h.url), keys, args);
        let out = stdout(&run(&["migrate"]));
        let expected = if round == 0 {
            applied_all(h)
        } else {
            up_to_date(h)
        };
        assert_eq!(out, expected);
        let store = SessionStore::builder(Keyring::generate())
            .open(&h.url)
            .unwrap();
        let now = system_now();
        insert_raw(store.database(), 5, now - 40 * 86_400, now - 40 * 86_400);
        for user in ["u-1", "u-2", "u-2"] {
            let mut s = store.load(None).unwrap();
            s.set_user(user);
            let _ = store.save(&mut s).unwrap();
        }
        let json: serde_json::Value =
            serde_json::from_str(&stdout(&run(&["stats", "--json"]))).unwrap();
        assert_eq!(
            (&json["live"], &json["expired"], &json["users"]),
            (&3.into(), &5.into(), &2.into()),
            "{json}"
        );
        let out = stdout(&run(&["trim", "--dry-run"]));
        assert_eq!(out.trim(), "Would trim 5 session(s)");
        assert_eq!(count(store.database()), 8);
        let out = stdout(&run(&["trim", "--batch-size", "2"]));
        assert_eq!(out.trim(), "Trimmed 5 session(s) in 3 batch(es)");
        assert_eq!(count(store.database()), 3);
        let text = stdout(&run(&["stats"]));
        assert!(text.contains("live sessions    3"), "{text}");
        assert!(text.contains("expired          0"), "{text}");

        // Commands that open sessions need the keys: a clear error, exit 1.
        for args in [&["list", "--user", "u-1"][..], &["revoke", "--user", "u-1"]] {
            let out = run(args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.starts_with("error: configuration error"), "{err}");
            if keys.is_none() {
                assert!(err.contains("STORED_SESSION_KEYS is not set"), "{err}");
            }
        }
        assert_eq!(count(store.database()), 3);

        let out = stdout(&run(&["revoke", "--all"]));
        assert_eq!(out.trim(), "Revoked 3 session(s)");
        assert_eq!(count(store.database()), 0);
    }
}

/// `rotate-keys` with a ring that lacks the key the sessions were sealed
/// with rotates what it can, leaves the rest, and fails with their count:
/// they will never open with this ring.
fn rotate_keys_without_the_old_key_fails(h: &Harness) {
    let (old, new) = (Key::generate(), Key::generate());
    stdout(&cli(Some(&h.url), None, &["migrate"]));
    let old_store = SessionStore::builder(Keyring::new(old.clone()))
        .open(&h.url)
        .unwrap();
    let new_store = SessionStore::builder(Keyring::new(new.clone()))
        .open(&h.url)
        .unwrap();
    for (store, n) in [(&old_store, 7u32), (&new_store, 2)] {
        for i in 0..n {
            let mut s = store.load(None).unwrap();
            s.insert("i", &i).unwrap();
            let _ = store.save(&mut s).unwrap();
        }
    }
    let envelopes = || -> Vec<(i64, Vec<u8>)> {
        rows(old_store.database())
            .into_iter()
            .map(|r| (r.id, r.data))
            .collect()
    };
    let before = envelopes();
    // Only the new key: the 7 old sessions open with nothing on the ring.
    let new_only = new.to_base64().to_string();
    let out = cli(Some(&h.url), Some(&new_only), &["rotate-keys"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "error: 7 session(s) could not be opened with STORED_SESSION_KEYS and were left as they are"
        ),
        "{err}"
    );
    // The report still goes to stdout.
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.starts_with("Re-encrypted 0 session(s); 2 already current, 7 unreadable, 0 busy"),
        "{report}"
    );
    assert_eq!(envelopes(), before, "no row may change");
    // A ring that opens none of them (the old key alone) says the same.
    let old_only = old.to_base64().to_string();
    let out = cli(Some(&h.url), Some(&old_only), &["rotate-keys"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: 2 session(s) could not be opened"),
        "{err}"
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.starts_with("Re-encrypted 0 session(s); 7 already current, 2 unreadable"),
        "{report}"
    );
    assert_eq!(envelopes(), before, "no row may change");
    // With the old key on the ring (after the new one): all rotated, exit 0.
    let both = format!("{new_only},{old_only}");
    let out = stdout(&cli(Some(&h.url), Some(&both), &["rotate-keys"]));
    assert!(
        out.starts_with("Re-encrypted 7 session(s); 2 already current, 0 unreadable"),
        "{out}"
    );
}

backend_suite!(
    rotate_keys_without_the_old_key_fails,
    maintenance_commands_need_no_keys,
    list_and_revoke_users,
    migrate_creates_the_table,
    trim_dry_run_then_trim_in_batches,
    stats_as_text_and_json,
    keygen_and_rotate_keys,
);

#[test]
fn install_writes_the_backend_migrations() {
    let dir = std::env::temp_dir().join(format!("ss-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let target = dir.to_str().unwrap();
    for (name, backend) in [
        ("sqlite", stored_session::Backend::Sqlite),
        ("postgres", stored_session::Backend::Postgres),
        ("mysql", stored_session::Backend::Mysql),
    ] {
        let sub = format!("{target}/{name}");
        let out = stdout(&cli(
            None,
            None,
            &["install", "--backend", name, "--dir", &sub],
        ));
        // Two files (up and down) per migration, plus metadata.toml for a
        // migration that has one.
        let all = migrations::for_backend(backend);
        let files: usize = all
            .iter()
            .map(|m| 2 + usize::from(m.metadata.is_some()))
            .sum();
        assert_eq!(out.lines().count(), files, "{out}");
        for m in all {
            let up = std::fs::read_to_string(format!("{sub}/{}/up.sql", m.name)).unwrap();
            assert_eq!(up, m.up);
            let down = std::fs::read_to_string(format!("{sub}/{}/down.sql", m.name)).unwrap();
            assert_eq!(down, m.down);
            let metadata = std::fs::read_to_string(format!("{sub}/{}/metadata.toml", m.name)).ok();
            assert_eq!(metadata.as_deref(), m.metadata, "{}", m.name);
        }
        // PostgreSQL's index migration runs outside a transaction (CREATE
        // INDEX CONCURRENTLY), for the diesel CLI too.
        if backend == stored_session::Backend::Postgres {
            assert!(out.contains("session_expiry_index/metadata.toml"), "{out}");
        }
        // Again: nothing to do, not an error.
        let out = stdout(&cli(
            None,
            None,
            &["install", "--backend", name, "--dir", &sub],
        ));
        assert!(out.starts_with("Migrations already installed"));
    }
    // A modified file is never overwritten.
    let m = migrations::for_backend(stored_session::Backend::Sqlite)[0];
    std::fs::write(format!("{target}/sqlite/{}/up.sql", m.name), "-- mine").unwrap();
    let out = cli(
        None,
        None,
        &[
            "install",
            "--backend",
            "sqlite",
            "--dir",
            &format!("{target}/sqlite"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exit_codes_and_one_line_errors() {
    let usage = cli(None, None, &["no-such-command"]);
    assert_eq!(usage.status.code(), Some(2));
    let bad_flag = cli(
        Some("sqlite::memory:"),
        None,
        &["trim", "--idle-timeout", "soon"],
    );
    assert_eq!(bad_flag.status.code(), Some(2));
    let no_db = cli(None, None, &["stats"]);
    assert_eq!(no_db.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&no_db.stderr).trim(),
        "error: no database: set DATABASE_URL, or pass --database-url-file or --database-url"
    );
    let unreachable = cli(
        Some("postgres://u:secret-pw@127.0.0.1:1/x"),
        None,
        &["stats"],
    );
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(unreachable.status.code(), Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("secret-pw"), "password leaked: {err}");
    let unsupported = cli(Some("redis://localhost"), None, &["stats"]);
    assert_eq!(unsupported.status.code(), Some(1));
}

/// A reader that goes away (`stored-session stats | head -1`) is not a
/// failure: no panic, no error line, exit 0.
#[cfg(all(unix, feature = "sqlite"))]
#[test]
fn a_closed_stdout_is_not_a_failure() {
    let h = Harness::sqlite().unwrap();
    stdout(&cli(Some(&h.url), None, &["migrate"]));
    // `true` has exited (closing the pipe) long before the command writes.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"{ sleep 0.5; "$0" stats; echo "exit $?" >&2; } | true"#)
        .arg(BIN)
        .env("DATABASE_URL", &h.url)
        .env_remove("STORED_SESSION_KEYS")
        .output()
        .expect("run sh");
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "exit 0");
}

/// Every command but `migrate` refuses a SQLite file that does not exist,
/// whichever way the URL names it, and leaves no file behind (it used to
/// create an empty database). `migrate` creates it.
#[cfg(feature = "sqlite")]
#[test]
fn only_migrate_creates_a_sqlite_file() {
    let dir = std::env::temp_dir().join(format!(
        "ss-missing-{}-{}",
        std::process::id(),
        &stored_session::SessionId::generate()
            .stored_id()
            .to_string()[3..15]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sessions.db");
    let shown = path.display().to_string();
    let keys = Key::generate().to_base64().to_string();
    for url in [
        shown.clone(),
        format!("sqlite://{shown}"),
        format!("file:{shown}?cache=shared"),
    ] {
        for args in [
            &["stats"][..],
            &["stats", "--json"],
            &["list", "--user", "u-1"],
            &["trim", "--dry-run"],
            &["trim"],
            &["revoke", "--all"],
            &["revoke", "--user", "u-1"],
            &["rotate-keys"],
        ] {
            let out = cli(Some(&url), Some(&keys), args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{url} {args:?}: {err}");
            assert_eq!(
                err.trim(),
                format!(
                    "error: no SQLite database at {shown} (run `stored-session migrate` to create it)"
                ),
                "{url} {args:?}"
            );
            assert!(out.stdout.is_empty(), "{url} {args:?}");
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
            assert!(left.is_empty(), "{url} {args:?} left {left:?}");
        }
    }
    let url = format!("sqlite://{shown}");
    stdout(&cli(Some(&url), None, &["migrate"]));
    assert!(path.exists());
    let out = stdout(&cli(Some(&url), None, &["trim", "--dry-run"]));
    assert_eq!(out.trim(), "Would trim 0 session(s)");
    let _ = std::fs::remove_dir_all(&dir);
}
