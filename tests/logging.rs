//! Every log line the store writes, captured: the built-in subscriber logs
//! each event at debug level, and no line ever holds a raw id or a key.

mod common;
mod log_capture;

use std::time::Duration;

use common::{row, set_data, Harness};
use stored_session::{trim_inactive, CookieAction, Key, Keyring, SessionStore};

/// Lines mentioning any of `sids` (so parallel tests don't see each other's).
fn lines_about(needles: &[String]) -> Vec<(log::Level, String, String)> {
    log_capture::lines()
        .iter()
        .filter(|(_, _, l)| needles.iter().any(|n| l.contains(n.as_str())))
        .cloned()
        .collect()
}

fn all_lines() -> Vec<String> {
    log_capture::lines()
        .iter()
        .map(|(_, _, l)| l.clone())
        .collect()
}

fn cookie(action: CookieAction) -> String {
    match action {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("{other:?}"),
    }
}

fn no_raw_id_or_key_in_any_log_line(h: &Harness) {
    log_capture::install();
    let key = Key::generate();
    let key_text = key.to_base64().to_string();
    let store = SessionStore::builder(Keyring::new(key))
        .config(h.config().touch_after(Duration::from_secs(10)))
        .open_migrated(&h.url)
        .unwrap();
    let mut cookies = Vec::new();
    let mut s = store.load(None).unwrap();
    s.insert("k", "v").unwrap();
    let first = cookie(store.save(&mut s).unwrap());
    cookies.push(first.clone());
    let sid = stored_session::SessionId::parse(&first)
        .unwrap()
        .stored_id();

    let mut s = store.load(Some(&first)).unwrap();
    s.insert("k", "w").unwrap();
    let _ = store.save(&mut s).unwrap();
    h.advance(11);
    let mut s = store.load(Some(&first)).unwrap();
    let _ = store.save(&mut s).unwrap(); // touch
    let mut s = store.load(Some(&first)).unwrap();
    s.renew();
    let renewed = cookie(store.save(&mut s).unwrap());
    cookies.push(renewed.clone());
    let renewed_sid = stored_session::SessionId::parse(&renewed)
        .unwrap()
        .stored_id();
    // Tampered row: a warning names the hashed id only.
    let mut data = row(store.database(), &renewed_sid).unwrap().data;
    data[40] ^= 1;
    set_data(store.database(), renewed_sid.as_bytes(), &data);
    assert!(store.load(Some(&renewed)).unwrap().is_new());
    let _ = store.load(Some("malformed-cookie-value")).unwrap();
    let _ = trim_inactive(&store).unwrap();

    let about = lines_about(&[sid.to_string(), renewed_sid.to_string()]);
    let debug: Vec<&str> = about
        .iter()
        .filter(|(lvl, target, _)| *lvl == log::Level::Debug && target == "stored_session")
        .map(|(_, _, l)| l.as_str())
        .filter(|l| l.starts_with("[StoredSession]"))
        .collect();
    for expected in [
        "[StoredSession] Session Write in ",
        "[StoredSession] Session Read in ",
        "[StoredSession] Session Touch in ",
        "[StoredSession] Session Renew in ",
        "[StoredSession] Session Rejected in ",
    ] {
        assert!(
            debug.iter().any(|l| l.starts_with(expected)),
            "no line starting {expected:?} in {debug:#?}"
        );
    }
    assert!(debug
        .iter()
        .any(|l| l.contains(&format!("(sid: \"{sid}\"")) && l.contains("Session Read in ")));
    assert!(about
        .iter()
        .any(|(lvl, _, l)| *lvl == log::Level::Warn && l.contains(&renewed_sid.to_string())));
    // The whole capture, every test's lines included: no cookie value, no key.
    for line in all_lines() {
        for secret in cookies.iter().chain([&key_text]) {
            assert!(
                !line.contains(secret.as_str()),
                "secret in log line: {line}"
            );
        }
    }
}

fn default_logging_can_be_disabled(h: &Harness) {
    log_capture::install();
    let store = h.store();
    store.set_log_events(false);
    let mut s = store.load(None).unwrap();
    s.insert("k", "v").unwrap();
    let c = cookie(store.save(&mut s).unwrap());
    let sid = stored_session::SessionId::parse(&c).unwrap().stored_id();
    let _ = store.load(Some(&c)).unwrap();
    assert!(lines_about(&[sid.to_string()]).is_empty());
    store.set_log_events(true);
    let _ = store.load(Some(&c)).unwrap();
    assert_eq!(lines_about(&[sid.to_string()]).len(), 1);
}

/// A session sealed under a key not on the ring is logged as a
/// configuration problem (error level, `UnknownKey`, the key id), never as
/// tampering; the start-up check logs a missing table (warn) and a keyring
/// that opens nothing (error). No line holds a cookie value or a key.
fn unknown_key_and_startup_check_lines(h: &Harness) {
    log_capture::install();
    let old_key = Key::generate();
    let old_text = old_key.to_base64().to_string();
    // Opened before migrating: the check warns that the table is missing.
    let store = SessionStore::builder(Keyring::new(old_key.clone()))
        .config(h.config())
        .open(&h.url)
        .unwrap();
    // (Only this test opens before migrating, so the line is its own.)
    let table = "start-up check: the stored_sessions table does not exist: \
                 run `stored-session migrate` or `store.run_migrations()` before the first request";
    assert!(
        log_capture::lines()
            .iter()
            .any(|(lvl, target, l)| *lvl == log::Level::Warn
                && target == "stored_session"
                && l.starts_with(table)),
        "no warning about the missing table"
    );
    store.run_migrations().unwrap();
    let mut s = store.load(None).unwrap();
    s.insert("k", "v").unwrap();
    let value = cookie(store.save(&mut s).unwrap());
    let sid = stored_session::SessionId::parse(&value)
        .unwrap()
        .stored_id();

    // Restart with another key: the check's error names the old key id.
    let new_key = Key::generate();
    let new_text = new_key.to_base64().to_string();
    let restarted = SessionStore::builder(Keyring::new(new_key))
        .config(h.config())
        .open_migrated(&h.url)
        .unwrap();
    let old_id = format!("{:08x}", old_key.id());
    let mismatch: Vec<_> = lines_about(&[format!("(key ids {old_id})")])
        .into_iter()
        .filter(|(_, _, l)| l.starts_with("start-up check: the keyring"))
        .collect();
    assert!(
        mismatch.iter().any(|(lvl, _, l)| *lvl == log::Level::Error
            && l.contains("opens 0 of the 1 most recently active sessions")),
        "{mismatch:#?}"
    );

    assert!(restarted.load(Some(&value)).unwrap().is_new());
    let about = lines_about(&[sid.to_string()]);
    let rejected: Vec<_> = about
        .iter()
        .filter(|(_, _, l)| l.starts_with("rejected stored session"))
        .collect();
    assert_eq!(rejected.len(), 1, "{about:#?}");
    let (level, target, line) = rejected[0];
    assert_eq!(
        (*level, target.as_str()),
        (log::Level::Error, "stored_session")
    );
    assert!(
        line.contains("UnknownKey")
            && line.contains(&old_id)
            && line.contains("not tampering")
            && !line.contains("Tampered"),
        "{line}"
    );
    for line in all_lines() {
        for secret in [&value, &old_text, &new_text] {
            assert!(
                !line.contains(secret.as_str()),
                "secret in log line: {line}"
            );
        }
    }
}

backend_suite!(
    no_raw_id_or_key_in_any_log_line,
    default_logging_can_be_disabled,
    unknown_key_and_startup_check_lines
);
