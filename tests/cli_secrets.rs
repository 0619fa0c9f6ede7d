//! The real `stored-session` binary never prints a database password,
//! whichever way the URL carries it and whichever way the URL is given.
#![cfg(feature = "cli")]

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_stored-session");
const SECRET: &str = "hunter2-Secret";

enum Given {
    Env,
    Argv,
    File,
}

fn run(url: &str, given: Given, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL")
        .env_remove("STORED_SESSION_KEYS")
        .env("RUST_LOG", "trace");
    let file = std::env::temp_dir().join(format!(
        "ss-url-{}-{}",
        std::process::id(),
        stored_session::SessionId::generate()
            .stored_id()
            .to_string()[3..15]
            .to_owned()
    ));
    match given {
        Given::Env => {
            cmd.env("DATABASE_URL", url);
        }
        Given::Argv => {
            cmd.arg("--database-url").arg(url);
        }
        Given::File => {
            std::fs::write(&file, format!("\n{url}\n")).unwrap();
            cmd.arg("--database-url-file").arg(&file);
        }
    }
    let out = cmd.args(args).output().expect("run stored-session");
    let _ = std::fs::remove_file(&file);
    out
}

/// Every credential form, against servers that refuse or reject it.
#[test]
fn failed_connections_never_print_the_password() {
    let urls = [
        format!("postgres://127.0.0.1:1/sessions?password={SECRET}"),
        format!("postgres://app:{SECRET}@127.0.0.1:1/sessions"),
        format!("postgresql://127.0.0.1:1/db?sslmode=disable&PassWord={SECRET}&x=1"),
        format!("mysql://root:{SECRET}@127.0.0.1:1/test"),
        format!("mariadb://root@127.0.0.1:1/test?password={SECRET}"),
        format!("redis://:{SECRET}@127.0.0.1:1"),
        // Percent-encoded in the user info: neither form may appear.
        "postgres://app:hunter2%2DSecret@127.0.0.1:1/db".to_string(),
    ];
    let handles: Vec<_> = urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| {
            std::thread::spawn(move || {
                let given = match i % 3 {
                    0 => Given::Env,
                    1 => Given::File,
                    _ => Given::Argv,
                };
                let out = run(&url, given, &["stats"]);
                (url, out)
            })
        })
        .collect();
    for h in handles {
        let (url, out) = h.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.starts_with("error: "), "{url}: {stderr}");
        for text in [&stderr, &stdout] {
            assert!(
                !text.contains(SECRET) && !text.contains("hunter2"),
                "{url} leaked its password: {text}"
            );
        }
    }
}

/// A URL read from a file works like DATABASE_URL; an empty or missing
/// file is a clear error; the file and the flag cannot both be given.
#[test]
fn the_url_can_come_from_a_file() {
    let db = std::env::temp_dir().join(format!("ss-cli-file-{}.db", std::process::id()));
    let url = format!("sqlite://{}", db.display());
    let out = run(&url, Given::File, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists());
    let _ = std::fs::remove_file(&db);

    let empty = std::env::temp_dir().join(format!("ss-cli-empty-{}", std::process::id()));
    std::fs::write(&empty, "\n  \n").unwrap();
    let out = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .arg("--database-url-file")
        .arg(&empty)
        .arg("migrate")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&empty);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty"));

    let out = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .args(["--database-url-file", "/nonexistent/url", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let out = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .args([
            "--database-url-file",
            "/x",
            "--database-url",
            "sqlite::memory:",
            "migrate",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "conflicting flags are bad usage"
    );
}
