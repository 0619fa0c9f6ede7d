//! HTML output for the admin page: the one escaping helper, URL and form
//! encoding, and the page templates (plain `write!`, no template engine).
//!
//! Every piece of text that is not a literal in this file goes through
//! [`escape_html`] (or [`Esc`], its non-allocating `Display` form) before
//! it reaches the page, attribute values included.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};

use crate::stats::{Percentiles, Stats};
use crate::users::{Cursor, SessionInfo};

/// Escapes text for HTML element content and quoted attribute values:
/// `&`, `<`, `>`, `"` and `'` become character references. Text without
/// any of them is returned as it is, without allocating.
///
/// ```
/// use stored_session::admin::escape_html;
///
/// assert_eq!(escape_html(r#"<a href="x">Tom & 'Jerry'</a>"#),
///            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
/// assert_eq!(escape_html("plain"), "plain");
/// ```
pub fn escape_html(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", Esc(text));
    Cow::Owned(out)
}

/// [`escape_html`] as a `Display` value: `write!(out, "{}", Esc(text))`.
pub(crate) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// Percent-encodes `text` for a URL query value or path: everything but
/// RFC 3986's unreserved characters (and `/` when `keep_slash`).
pub(crate) fn url_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Parses `application/x-www-form-urlencoded` text (a POST body or a query
/// string): `+` is a space, `%XX` a byte, invalid UTF-8 is replaced.
/// Malformed escapes are kept literally; nothing here fails.
pub(crate) fn parse_form(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(bytes: &[u8]) -> String {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The page's style sheet. It is the only style on the page: the Content
/// Security Policy allows exactly this text (by its SHA-256), no script.
pub(crate) const STYLE: &str = "
:root{color-scheme:light;--ink:#1d2330;--muted:#5b6475;--line:#d9dee7;--bg:#f5f7fa;--card:#fff;--accent:#2f5fd0;--accent2:#9db6ee;--danger:#b42318}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:var(--ink);background:var(--bg)}
header{background:var(--ink);color:#fff;padding:14px 28px}
header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:2px 0 0;color:#aab3c5;font-size:13px}
main{max-width:1080px;margin:0 auto;padding:20px 28px 48px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:0 0 20px}
h2{font-size:17px;margin:0 0 12px}
h3{font-size:15px;margin:18px 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:0 0 16px}
.cards div{border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.cards dt{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.cards dd{margin:2px 0 0;font-size:20px;font-weight:600}
.cards dd small{display:block;font-size:12px;font-weight:400;color:var(--muted)}
figure{margin:0}
figcaption{color:var(--muted);font-size:13px}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px;vertical-align:-1px}
.legend .created{background:var(--accent)}
.legend .active{background:var(--accent2)}
svg{display:block;max-width:100%;height:auto}
form.inline{display:inline}
label{font-size:14px}
input[type=text]{font:inherit;padding:6px 10px;border:1px solid var(--line);border-radius:6px;min-width:280px}
button{font:inherit;padding:6px 14px;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.danger{background:var(--card);color:var(--danger);border-color:var(--danger)}
button.small{padding:2px 10px;font-size:13px}
table{width:100%;border-collapse:collapse;margin:6px 0 14px;font-size:14px}
th,td{text-align:left;padding:7px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
td.ua{max-width:360px;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.notice{border-left:4px solid var(--accent);background:#eef3fd;padding:10px 14px;border-radius:6px;margin:0 0 20px}
.error{border-left-color:var(--danger);background:#fdf0ef}
.danger-zone{border-color:#f1c4bf}
.confirm{display:block;margin:8px 0}
code{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:13px;background:#eef0f4;padding:1px 5px;border-radius:4px}
";

/// What the index page shows.
pub(crate) struct Page<'a> {
    pub base: &'a str,
    pub csrf: &'a str,
    pub stats: &'a Stats,
    pub now: DateTime<Utc>,
    pub notice: Option<Notice>,
    /// The user looked up, and one page of their live sessions.
    pub user: Option<UserView<'a>>,
}

/// One page of a looked-up user's sessions.
pub(crate) struct UserView<'a> {
    pub user: &'a str,
    /// This page's sessions, newest first.
    pub sessions: &'a [SessionInfo],
    /// Where the next page starts, if there is one.
    pub next: Option<&'a Cursor>,
    /// Whether this is a later page (the request had a cursor).
    pub later: bool,
}

impl UserView<'_> {
    /// Whether the whole list is on this page.
    fn complete(&self) -> bool {
        !self.later && self.next.is_none()
    }
}

/// A message shown at the top of the page after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// One session ended.
    Revoked,
    /// The session to end was already gone.
    Gone,
    /// All of one user's sessions ended (how many).
    UserRevoked(u64),
    /// Every session ended (how many).
    AllRevoked(u64),
}

impl Notice {
    fn text(&self) -> String {
        match self {
            Notice::Revoked => "The session was ended.".into(),
            Notice::Gone => "That session had already ended; nothing was changed.".into(),
            Notice::UserRevoked(n) => format!("Ended {n} {} of this user.", plural(*n, "session")),
            Notice::AllRevoked(n) => format!("Ended every session: {n} in all."),
        }
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>Sessions</h1><p>stored-session administration</p></header>\n<main>\n",
        Esc(title)
    );
}

fn foot(out: &mut String) {
    out.push_str("</main>\n</body>\n</html>\n");
}

/// A short page with one message and a link back (errors, refusals).
pub(crate) fn message_page(base: &str, title: &str, message: &str) -> String {
    let mut out = String::with_capacity(4096);
    head(&mut out, title);
    let _ = write!(
        out,
        "<section><h2>{}</h2>\n<p class=\"notice error\" role=\"alert\">{}</p>\n\
         <p><a href=\"{}/\">Back to the admin page</a></p></section>\n",
        Esc(title),
        Esc(message),
        Esc(base)
    );
    foot(&mut out);
    out
}

/// The index page: statistics, chart, lookup, the user's sessions.
pub(crate) fn index_page(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    head(&mut out, "Sessions · admin");
    if let Some(notice) = &page.notice {
        let _ = writeln!(
            out,
            "<p class=\"notice\" role=\"status\">{}</p>",
            Esc(&notice.text())
        );
    }
    stats_section(&mut out, page);
    lookup_section(&mut out, page);
    danger_section(&mut out, page);
    foot(&mut out);
    out
}

fn stats_section(out: &mut String, page: &Page<'_>) {
    let s = page.stats;
    out.push_str("<section aria-labelledby=\"stats-title\">\n<h2 id=\"stats-title\">Statistics</h2>\n<dl class=\"cards\">\n");
    let card = |out: &mut String, label: &str, value: &str, note: &str| {
        let _ = writeln!(
            out,
            "<div><dt>{}</dt><dd>{}<small>{}</small></dd></div>",
            Esc(label),
            Esc(value),
            Esc(note)
        );
    };
    card(out, "Live sessions", &s.live.to_string(), "not expired");
    if let Some(n) = s.unreadable.filter(|&n| n > 0) {
        card(
            out,
            "Unreadable",
            &n.to_string(),
            "of those: sealed under a key not on the ring",
        );
    }
    card(out, "Expired", &s.expired.to_string(), "awaiting trim");
    card(out, "Users", &s.users.to_string(), "with a live session");
    card(
        out,
        "Sessions per user",
        &s.sessions_per_user.p50.to_string(),
        &format!(
            "median · {}",
            spread(&s.sessions_per_user, |n| n.to_string())
        ),
    );
    card(
        out,
        "Stored size",
        &bytes(s.payload_bytes.p50),
        &format!("median · {}", spread(&s.payload_bytes, bytes)),
    );
    card(
        out,
        "Last activity",
        &s.newest_activity
            .map(|t| ago(page.now, t))
            .unwrap_or_else(|| "never".into()),
        &s.oldest_activity
            .map(|t| format!("oldest live: {}", ago(page.now, t)))
            .unwrap_or_default(),
    );
    out.push_str("</dl>\n");
    chart(out, s);
    out.push_str("</section>\n");
}

fn spread(p: &Percentiles, show: impl Fn(u64) -> String) -> String {
    if p.count == 0 {
        return "no data".into();
    }
    format!("p90 {} · max {}", show(p.p90), show(p.max))
}

fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// "just now", "5 min ago", "3 h ago", "2 days ago".
fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    match secs {
        i64::MIN..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => {
            let days = secs / 86_400;
            format!("{days} {} ago", if days == 1 { "day" } else { "days" })
        }
    }
}

fn stamp(out: &mut String, now: DateTime<Utc>, t: DateTime<Utc>) {
    let _ = write!(
        out,
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        Esc(&t.to_rfc3339()),
        Esc(&t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        Esc(&ago(now, t))
    );
}

/// Inline SVG bars: sessions created and active in each of the last 24
/// hours (index 23 is the current hour).
fn chart(out: &mut String, s: &Stats) {
    const SLOT: u32 = 36;
    const BAR: u32 = 14;
    const TOP: u32 = 16;
    const PLOT: u32 = 140;
    const LEFT: u32 = 40;
    let width = LEFT + 24 * SLOT + 8;
    let height = TOP + PLOT + 28;
    let max = s
        .created_per_hour
        .iter()
        .chain(&s.active_per_hour)
        .copied()
        .max()
        .unwrap_or(0);
    // The axis top: even, so the middle grid line has an exact label.
    let max = (max + max % 2).max(2);
    let scale = |n: u64| ((n as f64 / max as f64) * f64::from(PLOT)).round() as u32;
    let total_created: u64 = s.created_per_hour.iter().sum();
    let total_active: u64 = s.active_per_hour.iter().sum();
    let _ = write!(
        out,
        "<figure>\n<svg id=\"activity\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" \
         role=\"img\" aria-labelledby=\"chart-title\" xmlns=\"http://www.w3.org/2000/svg\" \
         font-family=\"system-ui, sans-serif\" font-size=\"11\">\n\
         <title id=\"chart-title\">Sessions created ({total_created}) and active ({total_active}) per hour over the last 24 hours</title>\n"
    );
    // Grid: the baseline, the top and the middle.
    for (frac, label) in [(0u32, max), (1, max / 2), (2, 0)] {
        let y = TOP + PLOT * frac / 2;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#d9dee7\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#5b6475\">{label}</text>",
            width - 4,
            LEFT - 6,
            y + 4
        );
    }
    for hour in 0..24u32 {
        let i = hour as usize;
        let created = s.created_per_hour[i];
        let active = s.active_per_hour[i];
        let x = LEFT + hour * SLOT + (SLOT - 2 * BAR) / 2;
        let hours_ago = 23 - hour;
        let when = match hours_ago {
            0 => "this hour".to_owned(),
            1 => "1 hour ago".to_owned(),
            n => format!("{n} hours ago"),
        };
        let _ = write!(
            out,
            "<g class=\"hour\" data-created=\"{created}\" data-active=\"{active}\"><title>{}: {created} created, {active} active</title>",
            Esc(&when)
        );
        for (offset, n, fill) in [(0, created, "#2f5fd0"), (BAR, active, "#9db6ee")] {
            let h = scale(n).max(u32::from(n > 0));
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\" rx=\"2\" fill=\"{fill}\"/>",
                x + offset,
                TOP + PLOT - h,
                BAR - 1
            );
        }
        out.push_str("</g>\n");
        if hours_ago % 6 == 0 {
            let label = if hours_ago == 0 {
                "now".to_owned()
            } else {
                format!("−{hours_ago} h")
            };
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5b6475\">{}</text>",
                LEFT + hour * SLOT + SLOT / 2,
                TOP + PLOT + 18,
                Esc(&label)
            );
        }
    }
    out.push_str(
        "</svg>\n<figcaption class=\"legend\">Per hour, last 24 hours:\
         <span class=\"created\"></span>created<span class=\"active\"></span>last active</figcaption>\n</figure>\n",
    );
}

fn lookup_section(out: &mut String, page: &Page<'_>) {
    let base = page.base;
    let current = page.user.as_ref().map(|v| v.user).unwrap_or("");
    let _ = write!(
        out,
        "<section aria-labelledby=\"lookup-title\">\n<h2 id=\"lookup-title\">Look up a user</h2>\n\
         <form method=\"get\" action=\"{}/\" class=\"lookup\">\
         <label for=\"user\">User id</label> \
         <input type=\"text\" id=\"user\" name=\"user\" value=\"{}\" required maxlength=\"{}\" autocomplete=\"off\" spellcheck=\"false\"> \
         <button type=\"submit\">Look up</button></form>\n",
        Esc(base),
        Esc(current),
        super::MAX_USER_ID
    );
    if let Some(view) = &page.user {
        user_sessions(out, page, view);
    }
    out.push_str("</section>\n");
}

fn user_sessions(out: &mut String, page: &Page<'_>, view: &UserView<'_>) {
    let base = page.base;
    let (user, sessions) = (view.user, view.sessions);
    let n = sessions.len() as u64;
    let _ = writeln!(
        out,
        "<h3 id=\"user-title\">{} live {} of <code>{}</code>{}</h3>",
        n,
        plural(n, "session"),
        Esc(user),
        if view.complete() {
            ""
        } else {
            " on this page, newest first"
        }
    );
    if sessions.is_empty() {
        if view.complete() {
            out.push_str("<p class=\"muted\" id=\"no-sessions\">No live sessions.</p>\n");
            return;
        }
        out.push_str("<p class=\"muted\" id=\"no-sessions\">No more live sessions.</p>\n");
    } else {
        session_table(out, page, user, sessions);
    }
    pager(out, base, view);
    let all = if view.complete() {
        format!("all {} {}", n, plural(n, "session"))
    } else {
        "all sessions (not only this page)".to_owned()
    };
    let _ = writeln!(
        out,
        "<form method=\"post\" action=\"{}/revoke-user\" class=\"revoke-user\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"user\" value=\"{}\">\
         <label class=\"confirm\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> \
         Yes, end {} of this user</label>\
         <button type=\"submit\" class=\"danger\">Revoke all of this user</button></form>",
        Esc(base),
        Esc(page.csrf),
        Esc(user),
        Esc(&all)
    );
}

/// "First page" (on a later page) and "Next page" links.
fn pager(out: &mut String, base: &str, view: &UserView<'_>) {
    if view.complete() {
        return;
    }
    let first = format!("{base}/?user={}", url_encode(view.user, false));
    out.push_str("<nav class=\"pager\" aria-label=\"Pages of this user's sessions\"><p>");
    if view.later {
        let _ = write!(
            out,
            "<a id=\"first-page\" href=\"{}\">First page</a>",
            Esc(&first)
        );
    }
    if let Some(next) = view.next {
        if view.later {
            out.push_str(" · ");
        }
        let _ = write!(
            out,
            "<a id=\"next-page\" rel=\"next\" href=\"{}&amp;after={}\">Next page (older sessions)</a>",
            Esc(&first),
            Esc(&url_encode(next.as_str(), false))
        );
    }
    out.push_str("</p></nav>\n");
}

fn session_table(out: &mut String, page: &Page<'_>, user: &str, sessions: &[SessionInfo]) {
    let base = page.base;
    out.push_str(
        "<table id=\"sessions\">\n<thead><tr><th>Created</th><th>Last active</th><th>IP address</th>\
         <th>Location</th><th>Device</th><th>User agent</th><th>Other</th><th></th></tr></thead>\n<tbody>\n",
    );
    for info in sessions {
        out.push_str("<tr class=\"session\"><td>");
        stamp(out, page.now, info.created_at);
        out.push_str("</td><td>");
        stamp(out, page.now, info.last_active);
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
        let location = info.location.as_ref().map(ToString::to_string);
        let _ = write!(
            out,
            "</td><td>{}</td><td class=\"location\">{}</td><td class=\"device\">{}</td>\
             <td class=\"ua\">{}</td><td>",
            Esc(&dash(&info.ip)),
            Esc(&dash(&location)),
            Esc(&dash(&info.device)),
            Esc(&dash(&info.user_agent))
        );
        if info.fields.is_empty() {
            out.push_str("<span class=\"muted\">—</span>");
        }
        for (i, (name, value)) in info.fields.iter().enumerate() {
            if i > 0 {
                out.push_str("<br>");
            }
            let _ = write!(out, "{}: {}", Esc(name), Esc(value));
        }
        let _ = writeln!(
            out,
            "</td><td><form method=\"post\" action=\"{}/revoke\" class=\"inline revoke\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"user\" value=\"{}\">\
             <input type=\"hidden\" name=\"handle\" value=\"{}\">\
             <button type=\"submit\" class=\"danger small\">Revoke</button></form></td></tr>",
            Esc(base),
            Esc(page.csrf),
            Esc(user),
            Esc(info.handle.as_str())
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn danger_section(out: &mut String, page: &Page<'_>) {
    let _ = writeln!(
        out,
        "<section class=\"danger-zone\" aria-labelledby=\"all-title\">\n<h2 id=\"all-title\">Revoke everything</h2>\n\
         <p class=\"muted\">Ends every session of every user ({} live): everyone has to sign in again, \
         including you if this page runs on a session.</p>\n\
         <form method=\"post\" action=\"{}/revoke-all\" class=\"revoke-all\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label class=\"confirm\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> \
         I understand: sign out every user now</label>\
         <button type=\"submit\" class=\"danger\">Revoke every session</button></form>\n</section>",
        page.stats.live,
        Esc(page.base),
        Esc(page.csrf)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_html("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
        assert_eq!(escape_html("é ü 日本"), "é ü 日本");
        assert!(matches!(escape_html("safe"), Cow::Borrowed(_)));
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn forms() {
        let f = parse_form(b"user=a+b%26c&x&=v&bad=%zz%4&utf=%C3%A9&nul=%00");
        assert_eq!(
            f,
            vec![
                ("user".into(), "a b&c".into()),
                ("x".into(), "".into()),
                ("".into(), "v".into()),
                ("bad".into(), "%zz%4".into()),
                ("utf".into(), "é".into()),
                ("nul".into(), "\0".into()),
            ]
        );
        assert_eq!(parse_form(b"%"), vec![("%".into(), "".into())]);
        assert_eq!(parse_form(b"a=%F"), vec![("a".into(), "%F".into())]);
        assert_eq!(parse_form(b"\xff=1")[0].0, "\u{fffd}");
        assert_eq!(url_encode("a b/é&", false), "a%20b%2F%C3%A9%26");
        assert_eq!(url_encode("/admin x", true), "/admin%20x");
    }

    #[test]
    fn ages() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let at = |s: i64| DateTime::from_timestamp(1_000_000 - s, 0).unwrap();
        assert_eq!(ago(now, at(5)), "just now");
        assert_eq!(ago(now, at(-5)), "just now");
        assert_eq!(ago(now, at(300)), "5 min ago");
        assert_eq!(ago(now, at(7200)), "2 h ago");
        assert_eq!(ago(now, at(86_400)), "1 day ago");
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
