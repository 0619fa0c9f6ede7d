//! The one reader of raw `Cookie` request headers: the framework adapters
//! find the session cookie with it, the admin page its nonce and login
//! cookies. Names are matched byte for byte on what it returns.

/// The `name=value` pairs of one raw `Cookie` header value, as bytes.
///
/// Pairs are separated by `;`; the spaces and tabs around a pair (the `"; "`
/// separator of RFC 6265 section 4.2.1) are dropped, and the name is
/// everything before the first `=`, the value everything after it, exactly
/// as sent. Nothing else is normalised: no percent-decoding (a server that
/// decoded names would let `%5F%5FHost-id` stand in for `__Host-id`, and a
/// sibling subdomain or a plain-HTTP attacker plant a cookie the browser
/// keeps apart from the real one, the CVE-2020-8184 class), no Unicode
/// whitespace trimming (`\u{a0}id` is not `id`), no quote stripping, no
/// case folding. Pairs without `=` are skipped.
pub(crate) fn cookie_pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let pair = trim_ows(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        Some((&pair[..eq], &pair[eq + 1..]))
    })
}

/// `bytes` without leading and trailing spaces and horizontal tabs (HTTP's
/// optional whitespace), and nothing else.
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name and a value.
    type Pair<'a> = (&'a [u8], &'a [u8]);

    #[test]
    fn pairs_are_split_exactly() {
        let nbsp_id = "\u{a0}id=4; id\u{a0}=5";
        let cases: [(&[u8], &[Pair<'_>]); 5] = [
            // Spaces and tabs around a pair go, inside it they stay.
            (
                b"a=1; b=2;c=3\t;  d = 4 ",
                &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"d ", b" 4")],
            ),
            // The first `=` splits; empty values and names and raw bytes stay.
            (
                b"x=a=b; y=; =z; \xff=\xfe",
                &[(b"x", b"a=b"), (b"y", b""), (b"", b"z"), (b"\xff", b"\xfe")],
            ),
            // No `=`: skipped. Nothing decoded, unquoted or case-folded.
            (
                b"flag; ;; %69d=1; \"id\"=2; ID=3",
                &[(b"%69d", b"1"), (b"\"id\"", b"2"), (b"ID", b"3")],
            ),
            // No Unicode whitespace trimmed.
            (
                nbsp_id.as_bytes(),
                &[("\u{a0}id".as_bytes(), b"4"), ("id\u{a0}".as_bytes(), b"5")],
            ),
            (b"", &[]),
        ];
        for (header, expected) in cases {
            let pairs: Vec<Pair<'_>> = cookie_pairs(header).collect();
            assert_eq!(pairs, expected, "{:?}", String::from_utf8_lossy(header));
        }
    }
}
