//! Hiding credentials of database URLs from error messages, `Debug` output
//! and logs.
//!
//! A URL can carry a password in three places: the user-info part
//! (`postgres://user:secret@host/db`), a query parameter
//! (`postgres://host/db?password=secret`, `?sslpassword=…`), or, for a
//! libpq-style string, a `password=secret` pair. [`url`] rewrites each to
//! `***`; [`scrub`] also removes every literal occurrence of those
//! passwords (raw and percent-decoded) from a driver's message, in case the
//! driver echoed one.

/// Query and key-value parameter names whose values are secrets (compared
/// ASCII case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "sslpassword",
    "secret",
    "token",
    "auth_token",
    "access_token",
];

const MASK: &str = "***";

fn is_secret_param(name: &str) -> bool {
    let name = name.trim();
    SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// Where the secrets of `text` are, as byte ranges (unsorted, possibly
/// overlapping).
fn secret_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    // The password of `scheme://user:password@host`: from the first ':'
    // after "://" up to the last '@' before the path.
    if let Some(scheme_end) = text.find("://") {
        let start = scheme_end + 3;
        let authority_end = text[start..]
            .find(['/', '?', '#'])
            .map_or(text.len(), |i| start + i);
        if let Some(at) = text[start..authority_end].rfind('@') {
            let at = start + at;
            // An empty password (`user:@host`) is no password: nothing
            // to hide, so the URL is shown as it is.
            if let Some(colon) = text[start..at].find(':') {
                if start + colon + 1 < at {
                    ranges.push(start + colon + 1..at);
                }
            }
        }
    }
    // `name=value` pairs in a query string or a key-value string.
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(eq) = text[i..].find('=').map(|e| i + e) {
        let name_start = text[..eq]
            .rfind(['?', '&', ';', ' ', '\t', '\n', '"', '\''])
            .map_or(0, |p| p + 1);
        let mut value_end = eq + 1;
        if bytes.get(value_end) == Some(&b'\'') {
            // libpq quoting: 'value with spaces', backslash escapes.
            value_end += 1;
            while value_end < bytes.len() && bytes[value_end] != b'\'' {
                value_end += if bytes[value_end] == b'\\' { 2 } else { 1 };
            }
            value_end = (value_end + 1).min(bytes.len());
            while !text.is_char_boundary(value_end) {
                value_end += 1;
            }
        } else {
            while value_end < bytes.len()
                && !matches!(bytes[value_end], b'&' | b';' | b' ' | b'\t' | b'\n' | b'#')
            {
                value_end += 1;
            }
        }
        if is_secret_param(&text[name_start..eq]) && value_end > eq + 1 {
            ranges.push(eq + 1..value_end);
        }
        i = eq + 1;
    }
    ranges
}

/// `text` with every secret range replaced by `***`.
fn mask(text: &str, mut ranges: Vec<std::ops::Range<usize>>) -> String {
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        if r.end <= at {
            continue;
        }
        let start = r.start.max(at);
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// A database URL (or libpq key-value string) with its passwords replaced
/// by `***`, safe for error messages, logs and start-up banners: the
/// password of the user info, every `password=`, `sslpassword=`, `pwd=`,
/// `token=` (and similar) parameter, and libpq `password=` pairs. The store
/// uses it for every message it builds from a URL.
///
/// ```
/// use stored_session::redact_url;
///
/// assert_eq!(redact_url("postgres://app:s3cret@db/app"), "postgres://app:***@db/app");
/// assert_eq!(redact_url("postgres://db/app?password=s3cret"), "postgres://db/app?password=***");
/// assert_eq!(redact_url("sqlite://sessions.db"), "sqlite://sessions.db");
/// ```
pub fn redact_url(url: &str) -> String {
    mask(url, secret_ranges(url))
}

pub(crate) use redact_url as url;

/// The passwords a URL carries, raw and percent-decoded.
fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    for r in secret_ranges(url) {
        let raw = url[r].trim_matches('\'');
        if raw.is_empty() || raw == MASK {
            continue;
        }
        found.push(raw.to_owned());
        let decoded = percent_decode(raw);
        if decoded != raw {
            found.push(decoded);
        }
    }
    // Longest first, so a secret containing another is removed whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found
}

/// `message` (say, a driver's error) with the URL's passwords removed
/// wherever they appear, and any URL-shaped secret in it masked.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut out = self::url(message);
    for secret in secrets(url) {
        // Very short secrets would mask unrelated text; the masking of
        // the URL forms above still applies to them.
        if secret.len() >= 4 {
            out = out.replace(&secret, MASK);
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{scrub, url};

    #[test]
    fn every_credential_form_is_masked() {
        let cases = [
            (
                "postgres://app:s3cret@db.example/sessions",
                "postgres://app:***@db.example/sessions",
            ),
            (
                "postgres://db.example/sessions?password=s3cret",
                "postgres://db.example/sessions?password=***",
            ),
            (
                "postgres://db/x?sslmode=require&PASSWORD=s3cret&application_name=a",
                "postgres://db/x?sslmode=require&PASSWORD=***&application_name=a",
            ),
            (
                "mysql://root:p%40ss@127.0.0.1:3306/test?sslpassword=k3y",
                "mysql://root:***@127.0.0.1:3306/test?sslpassword=***",
            ),
            (
                "host=db user=app password=s3cret dbname=x",
                "host=db user=app password=*** dbname=x",
            ),
            (
                "host=db password='s3 cret' dbname=x",
                "host=db password=*** dbname=x",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
            ("sqlite://data/sessions.db", "sqlite://data/sessions.db"),
            ("postgres://a:b@c@host/db", "postgres://a:***@host/db"),
            // Only where there was a password.
            ("postgres://app:@db/x", "postgres://app:@db/x"),
            ("postgres://db:5432/x", "postgres://db:5432/x"),
            (
                "mysql://root@127.0.0.1:3306/test",
                "mysql://root@127.0.0.1:3306/test",
            ),
            ("postgres://db/x?password=", "postgres://db/x?password="),
            ("postgres://[::1]:5432/x", "postgres://[::1]:5432/x"),
        ];
        for (input, expected) in cases {
            assert_eq!(url(input), expected, "{input}");
        }
    }

    #[test]
    fn multi_host_urls_are_masked() {
        let cases = [
            (
                "postgres://app:s3cret@10.0.0.1:5433,10.0.0.2:5434/db?target_session_attrs=read-write",
                "postgres://app:***@10.0.0.1:5433,10.0.0.2:5434/db?target_session_attrs=read-write",
            ),
            (
                "postgresql://app:s3cret@[::1]:5433,[::1]:5434/db",
                "postgresql://app:***@[::1]:5433,[::1]:5434/db",
            ),
            // A comma or an '@' inside the password.
            (
                "postgres://app:s3,cr@t@h1:1,h2:2/db",
                "postgres://app:***@h1:1,h2:2/db",
            ),
            (
                "postgres://h1:1,h2:2/db?user=app&password=s3cret&host=h1,h2",
                "postgres://h1:1,h2:2/db?user=app&password=***&host=h1,h2",
            ),
            (
                "host=h1,h2 port=5433,5434 password=s3cret target_session_attrs=read-write",
                "host=h1,h2 port=5433,5434 password=*** target_session_attrs=read-write",
            ),
            // Without a password: shown as given.
            (
                "postgres://postgres@127.0.0.1:5433,127.0.0.1:5434/db",
                "postgres://postgres@127.0.0.1:5433,127.0.0.1:5434/db",
            ),
            ("postgres://h1,h2/db", "postgres://h1,h2/db"),
        ];
        for (input, expected) in cases {
            assert_eq!(url(input), expected, "{input}");
        }
        // A driver's message about each host, echoing the password.
        let u = "postgres://app:s3cret-pw@h1:1,h2:2/db";
        let message = "connection to server at \"h1\", port 1 failed: password s3cret-pw rejected \
                       connection to server at \"h2\", port 2 failed: Connection refused";
        let out = scrub(message, u);
        assert!(!out.contains("s3cret-pw"), "{out}");
        assert!(out.contains("port 2 failed"), "{out}");
    }

    #[test]
    fn echoed_passwords_are_removed_from_messages() {
        let u = "mysql://root:p%40ssw0rd@h/db?token=abcdef";
        let message = "access denied for root using p@ssw0rd; p%40ssw0rd; abcdef";
        let out = scrub(message, u);
        assert!(!out.contains("p@ssw0rd"), "{out}");
        assert!(!out.contains("p%40ssw0rd"), "{out}");
        assert!(!out.contains("abcdef"), "{out}");
    }

    #[test]
    fn odd_input_never_panics() {
        for text in [
            "",
            "=",
            "==",
            "?password=",
            "x://@",
            "x://:@",
            "%",
            "a%4",
            "p='",
            "p='\\",
            "password='\\é'",
        ] {
            let _ = url(text);
            let _ = scrub(text, text);
        }
    }
}
