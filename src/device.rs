//! Feature `devices`: a short device label ("Firefox on Linux", "Safari on
//! iPhone") from a `User-Agent`, through the `woothee` parser (a bundled
//! dataset and a few dozen small regexes compiled on first use: about 8 µs
//! a parse, no start-up cost).

/// The label of `user_agent`: browser and operating system (`Firefox on
/// Linux`), or whichever of the two is known (`Googlebot`), `None` when
/// neither is. Versions are left out, the Windows one too (Windows 11
/// reports itself as Windows 10).
pub(crate) fn label(user_agent: &str) -> Option<String> {
    let parsed = woothee::parser::Parser::new().parse(user_agent)?;
    let browser = known(parsed.name);
    let os = known(parsed.os).map(os_name);
    match (browser, os) {
        (Some(browser), Some(os)) => Some(format!("{browser} on {os}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

/// The value, unless woothee did not know it.
fn known(value: &str) -> Option<&str> {
    (!value.is_empty() && value != woothee::woothee::VALUE_UNKNOWN).then_some(value)
}

/// The operating system's everyday name.
fn os_name(os: &str) -> &str {
    match os {
        "Mac OSX" => "macOS",
        "Windows Phone OS" => "Windows Phone",
        os if os.starts_with("Windows") => "Windows",
        os => os,
    }
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn labels() {
        for (ua, expected) in [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                Some("Firefox on Linux"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                Some("Safari on iPhone"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                Some("Edge on Windows"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Mobile Safari/537.36",
                Some("Chrome on Android"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                Some("Safari on macOS"),
            ),
            ("", None),
            ("\u{0}\u{1}garbage", None),
        ] {
            assert_eq!(label(ua).as_deref(), expected, "{ua}");
        }
    }
}
