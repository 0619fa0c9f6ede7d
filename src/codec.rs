//! MessagePack encoding of session values and of the whole session payload.
//!
//! Each value is encoded on `insert` (so type errors surface there) and kept
//! as bytes, so a conflicting write can be merged key by key. The payload that
//! gets encrypted is a MessagePack map holding the creation time, the values
//! and, when present, metadata, the user binding and the session's own
//! expiry.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{Error, Result};
use crate::expiry::StoredExpiry;

/// Encodes one session value.
pub(crate) fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    // Most values (ids, tokens, flags) fit without the buffer growing.
    let mut out = Vec::with_capacity(64);
    rmp_serde::encode::write_named(&mut out, value)?;
    Ok(out)
}

/// Decodes one session value.
pub(crate) fn decode_value<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|source| Error::Decode {
        key: key.to_owned(),
        source,
    })
}

/// The plaintext inside an envelope.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Payload {
    /// Creation time (Unix seconds), authenticated: absolute expiry is checked
    /// against it as well as against the `created_at` column.
    #[serde(rename = "c")]
    pub created_at: i64,
    /// Session values, each MessagePack-encoded.
    #[serde(rename = "d")]
    pub data: BTreeMap<String, ByteBuf>,
    /// Optional metadata (IP, user agent, application fields).
    #[serde(rename = "m", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// The application user id the session is bound to (its HMAC is the
    /// `user_key` column; the id itself only exists encrypted).
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The session's own expiry, when it chose one (absent: the store's
    /// limits).
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<StoredExpiry>,
    /// Flash messages waiting for a later request, each MessagePack-encoded
    /// (absent when there are none: older payloads decode unchanged).
    #[serde(rename = "f", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flashes: BTreeMap<String, ByteBuf>,
    /// The session's CSRF token, once one was asked for.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

/// The payload as `load` reads it: the values go straight into the map type
/// a session keeps (one map built per load, not a map of `ByteBuf`s and then
/// a second one). Decodes exactly what [`Payload::decode`] accepts.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(crate) struct LoadedPayload {
    #[serde(rename = "c")]
    pub created_at: i64,
    #[serde(rename = "d", deserialize_with = "values_from_bytes")]
    pub data: BTreeMap<String, Vec<u8>>,
    #[serde(rename = "m", default)]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "u", default)]
    pub user: Option<String>,
    #[serde(rename = "e", default)]
    pub expiry: Option<StoredExpiry>,
    #[serde(rename = "f", default, deserialize_with = "values_from_bytes")]
    pub flashes: BTreeMap<String, Vec<u8>>,
    #[serde(rename = "k", default)]
    pub csrf: Option<String>,
}

impl LoadedPayload {
    /// Decodes a payload; `None` for anything malformed (never a panic).
    ///
    /// A payload in the form the store writes is read by a direct
    /// MessagePack reader ([`fast::decode`]: 226 instead of 268 ns for a
    /// 1 KiB session, criterion `msgpack/decode_1k` against
    /// `msgpack/decode_1k_serde`; the rest is allocating the values);
    /// anything else it does not know (other encodings of
    /// the same values, an expiry, unknown or duplicate fields, malformed
    /// bytes) goes to serde, which decides. The direct reader accepts
    /// nothing serde refuses and yields exactly what serde yields.
    pub fn decode(bytes: &[u8]) -> Option<LoadedPayload> {
        fast::decode(bytes).or_else(|| Self::decode_with_serde(bytes))
    }

    /// Decodes a payload through serde only.
    pub(crate) fn decode_with_serde(bytes: &[u8]) -> Option<LoadedPayload> {
        rmp_serde::from_slice(bytes).ok()
    }
}

/// The direct reader of the payloads the store writes: a MessagePack map
/// whose keys are the one-letter field names as strings, holding the
/// creation time (an integer), the values and flash messages (maps of
/// strings to binaries), the metadata (a map of strings to strings), the
/// user and the CSRF token (a string or nil). It gives up (`None`, and
/// serde decides) at anything else: another type or encoding, an expiry
/// (`"e"`), an unknown or repeated field, a missing `"c"` or `"d"`, text
/// that is not UTF-8, bytes left over or missing.
pub(crate) mod fast {
    use std::collections::BTreeMap;

    use rmp::decode::{read_bin_len, read_int, read_map_len, read_str_len};

    use super::LoadedPayload;

    /// MessagePack's nil marker.
    const NIL: u8 = 0xc0;

    /// Decodes `bytes`, or `None` when serde must decide.
    pub(crate) fn decode(bytes: &[u8]) -> Option<LoadedPayload> {
        let mut r = Reader(bytes);
        let mut payload = LoadedPayload::default();
        let mut seen = 0u8;
        for _ in 0..r.map_len()? {
            let (bit, field) = match r.str()? {
                "c" => (1, Field::Created),
                "d" => (2, Field::Data),
                "m" => (4, Field::Meta),
                "u" => (8, Field::User),
                "f" => (16, Field::Flashes),
                "k" => (32, Field::Csrf),
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match field {
                Field::Created => payload.created_at = r.int()?,
                Field::Data => payload.data = r.binaries()?,
                Field::Meta => {
                    for _ in 0..r.map_len()? {
                        let key = r.str()?.to_owned();
                        payload.meta.insert(key, r.str()?.to_owned());
                    }
                }
                Field::User => payload.user = r.optional_str()?,
                Field::Flashes => payload.flashes = r.binaries()?,
                Field::Csrf => payload.csrf = r.optional_str()?,
            }
        }
        (seen & 3 == 3 && r.0.is_empty()).then_some(payload)
    }

    enum Field {
        Created,
        Data,
        Meta,
        User,
        Flashes,
        Csrf,
    }

    /// The bytes not read yet. Markers, lengths and integers are read by
    /// `rmp`'s decoding primitives (the ones `rmp-serde` is built on);
    /// this reader only walks the payload's known shape.
    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        /// The next `len` bytes, or `None` when fewer are left.
        fn take(&mut self, len: u32) -> Option<&'a [u8]> {
            let len = usize::try_from(len).ok()?;
            if len > self.0.len() {
                return None;
            }
            let (taken, rest) = self.0.split_at(len);
            self.0 = rest;
            Some(taken)
        }

        fn map_len(&mut self) -> Option<u32> {
            read_map_len(&mut self.0).ok()
        }

        fn str(&mut self) -> Option<&'a str> {
            let len = read_str_len(&mut self.0).ok()?;
            std::str::from_utf8(self.take(len)?).ok()
        }

        fn optional_str(&mut self) -> Option<Option<String>> {
            if let Some(rest) = self.0.strip_prefix(&[NIL]) {
                self.0 = rest;
                return Some(None);
            }
            self.str().map(|s| Some(s.to_owned()))
        }

        fn bin(&mut self) -> Option<&'a [u8]> {
            let len = read_bin_len(&mut self.0).ok()?;
            self.take(len)
        }

        /// A map of strings to binaries (the last of a repeated key wins,
        /// as it does for serde's map).
        fn binaries(&mut self) -> Option<BTreeMap<String, Vec<u8>>> {
            let mut values = BTreeMap::new();
            for _ in 0..self.map_len()? {
                let key = self.str()?.to_owned();
                values.insert(key, self.bin()?.to_vec());
            }
            Some(values)
        }

        /// Any integer encoding of a value that fits an `i64`.
        fn int(&mut self) -> Option<i64> {
            read_int(&mut self.0).ok()
        }
    }
}

/// A map of byte strings into `BTreeMap<String, Vec<u8>>` (as a
/// `BTreeMap<String, ByteBuf>` would decode it, the last duplicate winning).
fn values_from_bytes<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<BTreeMap<String, Vec<u8>>, D::Error> {
    struct Values;

    impl<'de> serde::de::Visitor<'de> for Values {
        type Value = BTreeMap<String, Vec<u8>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of byte strings")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut values = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, ByteBuf>()? {
                values.insert(key, value.into_vec());
            }
            Ok(values)
        }
    }

    deserializer.deserialize_map(Values)
}

/// The payload as `commit` writes it, borrowing the session's values instead
/// of copying them into a [`Payload`]. It encodes to exactly the same bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct PayloadRef<'a> {
    #[serde(rename = "c")]
    pub created_at: i64,
    #[serde(rename = "d", serialize_with = "values_as_bytes")]
    pub data: &'a BTreeMap<String, Vec<u8>>,
    #[serde(rename = "m", skip_serializing_if = "is_empty")]
    pub meta: &'a BTreeMap<String, String>,
    #[serde(rename = "u", skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(rename = "e", skip_serializing_if = "Option::is_none")]
    pub expiry: Option<StoredExpiry>,
    #[serde(
        rename = "f",
        serialize_with = "values_as_bytes",
        skip_serializing_if = "is_empty"
    )]
    pub flashes: &'a BTreeMap<String, Vec<u8>>,
    #[serde(rename = "k", skip_serializing_if = "Option::is_none")]
    pub csrf: Option<&'a str>,
}

impl PayloadRef<'_> {
    /// The payload as its own buffer (the benchmarks and tests; the store
    /// encodes straight into the envelope with `encode_into`).
    #[cfg(any(test, feature = "fuzzing", feature = "bench-internals"))]
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the encoded payload to `out`: exactly the bytes serde's
    /// `write_named` writes, through the same MessagePack primitives but
    /// without serde's generic path (a session with its own expiry, rare,
    /// takes serde's).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.expiry.is_none() {
            return Ok(self.encode_direct(out)?);
        }
        Ok(rmp_serde::encode::write_named(out, self)?)
    }

    /// The direct encoder: the map of the fields serde writes (those
    /// `skip_serializing_if` keeps), in declaration order, keys as strings.
    fn encode_direct(
        &self,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), rmp_serde::encode::Error> {
        use rmp::encode::{write_bin, write_map_len, write_sint, write_str};
        debug_assert!(self.expiry.is_none());
        let present = [
            !self.meta.is_empty(),
            self.user.is_some(),
            !self.flashes.is_empty(),
            self.csrf.is_some(),
        ];
        let fields = 2 + present.iter().filter(|p| **p).count();
        write_map_len(out, fields as u32)?;
        write_str(out, "c")?;
        write_sint(out, self.created_at)?;
        let binaries = |out: &mut Vec<u8>, map: &BTreeMap<String, Vec<u8>>| {
            write_map_len(out, map.len() as u32)?;
            for (key, value) in map {
                write_str(out, key)?;
                write_bin(out, value)?;
            }
            Ok::<(), rmp_serde::encode::Error>(())
        };
        write_str(out, "d")?;
        binaries(out, self.data)?;
        if !self.meta.is_empty() {
            write_str(out, "m")?;
            write_map_len(out, self.meta.len() as u32)?;
            for (key, value) in self.meta {
                write_str(out, key)?;
                write_str(out, value)?;
            }
        }
        if let Some(user) = self.user {
            write_str(out, "u")?;
            write_str(out, user)?;
        }
        if !self.flashes.is_empty() {
            write_str(out, "f")?;
            binaries(out, self.flashes)?;
        }
        if let Some(csrf) = self.csrf {
            write_str(out, "k")?;
            write_str(out, csrf)?;
        }
        Ok(())
    }

    /// An upper bound of the encoded length for ordinary payloads (each
    /// string or binary header takes at most 5 bytes), so the buffer is
    /// sized once instead of growing while the encoder writes.
    pub fn encoded_len_hint(&self) -> usize {
        const FRAMING: usize = 32;
        let values: usize = (self.data.iter().chain(self.flashes))
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum::<usize>()
            + self.csrf.map_or(0, |t| t.len() + 10);
        let meta: usize = self.meta.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
        // An expiry takes at most 12 bytes (map header, key, a u64/i64).
        FRAMING + values + meta + self.user.map_or(0, |u| u.len() + 5) + 12
    }
}

/// Each value as MessagePack `bin`, as `ByteBuf` serializes it.
fn values_as_bytes<S: serde::Serializer>(
    data: &&BTreeMap<String, Vec<u8>>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_map(
        data.iter()
            .map(|(k, v)| (k, serde_bytes::Bytes::new(v.as_slice()))),
    )
}

fn is_empty<V>(map: &&BTreeMap<String, V>) -> bool {
    map.is_empty()
}

impl Payload {
    /// Encodes an owned payload (the fuzzing entry points and tests; the
    /// store encodes through `PayloadRef`).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(rmp_serde::to_vec_named(self)?)
    }

    /// Decodes a payload; `None` for anything malformed (never a panic).
    pub fn decode(bytes: &[u8]) -> Option<Payload> {
        rmp_serde::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let mut p = Payload {
            created_at: 1_800_000_000,
            ..Default::default()
        };
        p.data
            .insert("n".into(), ByteBuf::from(encode_value(&42u32).unwrap()));
        let bytes = p.encode().unwrap();
        assert_eq!(Payload::decode(&bytes), Some(p));
        assert_eq!(Payload::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Payload::decode(b""), None);
    }

    #[test]
    fn borrowed_payload_encodes_like_the_owned_one() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("csrf".to_owned(), encode_value("token").unwrap()),
            ("n".to_owned(), encode_value(&42u32).unwrap()),
        ]
        .into();
        let meta: BTreeMap<String, String> = [("ip".to_owned(), "192.0.2.1".to_owned())].into();
        let empty = BTreeMap::new();
        let remember = Some(StoredExpiry::Idle(30 * 86_400));
        for (meta, user, expiry) in [(&empty, None, None), (&meta, Some("alice"), remember)] {
            let owned = Payload {
                created_at: 1_800_000_000,
                data: data
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteBuf::from(v.clone())))
                    .collect(),
                meta: meta.clone(),
                user: user.map(str::to_owned),
                expiry,
                ..Default::default()
            };
            let borrowed = PayloadRef {
                created_at: 1_800_000_000,
                data: &data,
                meta,
                user,
                expiry,
                flashes: &BTreeMap::new(),
                csrf: None,
            };
            let bytes = borrowed.encode().unwrap();
            assert_eq!(bytes, owned.encode().unwrap());
            assert!(borrowed.encoded_len_hint() >= bytes.len());
        }
    }

    #[test]
    fn loaded_payload_decodes_like_the_owned_one() {
        let mut p = Payload {
            created_at: 1_800_000_000,
            user: Some("alice".into()),
            expiry: Some(StoredExpiry::At(1_900_000_000)),
            ..Default::default()
        };
        p.data
            .insert("n".into(), ByteBuf::from(encode_value(&42u32).unwrap()));
        p.data
            .insert("s".into(), ByteBuf::from(encode_value("x").unwrap()));
        p.meta.insert("ip".into(), "192.0.2.1".into());
        let bytes = p.encode().unwrap();
        let loaded = LoadedPayload::decode(&bytes).unwrap();
        assert_eq!(loaded.created_at, p.created_at);
        assert_eq!(loaded.meta, p.meta);
        assert_eq!(loaded.user, p.user);
        assert_eq!(loaded.expiry, p.expiry);
        let owned: BTreeMap<String, Vec<u8>> = p
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vec()))
            .collect();
        assert_eq!(loaded.data, owned);
        let bare = Payload {
            created_at: 7,
            ..Default::default()
        };
        let bare_bytes = bare.encode().unwrap();
        assert!(LoadedPayload::decode(&bare_bytes).unwrap().data.is_empty());
        for bad in [&bytes[..bytes.len() - 1], b"", b"\x81\xa1d\x01"] {
            assert_eq!(
                LoadedPayload::decode(bad).is_some(),
                Payload::decode(bad).is_some()
            );
        }
    }

    #[test]
    fn flashes_and_csrf_token_round_trip_and_are_optional() {
        let data: BTreeMap<String, Vec<u8>> =
            [("n".to_owned(), encode_value(&42u32).unwrap())].into();
        let flashes: BTreeMap<String, Vec<u8>> =
            [("notice".to_owned(), encode_value("saved").unwrap())].into();
        let meta = BTreeMap::new();
        let token = "t".repeat(43);
        let borrowed = PayloadRef {
            created_at: 1_800_000_000,
            data: &data,
            meta: &meta,
            user: None,
            expiry: Some(StoredExpiry::BrowserSession),
            flashes: &flashes,
            csrf: Some(&token),
        };
        let bytes = borrowed.encode().unwrap();
        assert!(borrowed.encoded_len_hint() >= bytes.len());
        let owned = Payload::decode(&bytes).unwrap();
        assert_eq!(owned.encode().unwrap(), bytes);
        assert_eq!(owned.csrf.as_deref(), Some(token.as_str()));
        assert_eq!(owned.flashes["notice"].as_slice(), flashes["notice"]);
        let loaded = LoadedPayload::decode(&bytes).unwrap();
        assert_eq!(loaded.flashes, flashes);
        assert_eq!(loaded.csrf.as_deref(), Some(token.as_str()));
        assert_eq!(loaded.expiry, Some(StoredExpiry::BrowserSession));
        assert_eq!(loaded.data, data);

        // Without flashes or a token, the payload is byte for byte what it
        // was before either existed, and such a payload decodes to neither.
        let plain = PayloadRef {
            flashes: &BTreeMap::new(),
            csrf: None,
            expiry: None,
            ..borrowed
        };
        let plain_bytes = plain.encode().unwrap();
        let mut legacy = Vec::new();
        #[derive(Serialize)]
        struct Before<'a> {
            #[serde(rename = "c")]
            created_at: i64,
            #[serde(rename = "d")]
            data: BTreeMap<&'a str, &'a serde_bytes::Bytes>,
        }
        let before = Before {
            created_at: 1_800_000_000,
            data: data
                .iter()
                .map(|(k, v)| (k.as_str(), serde_bytes::Bytes::new(v)))
                .collect(),
        };
        rmp_serde::encode::write_named(&mut legacy, &before).unwrap();
        assert_eq!(plain_bytes, legacy);
        let loaded = LoadedPayload::decode(&legacy).unwrap();
        assert!(loaded.flashes.is_empty() && loaded.csrf.is_none() && loaded.expiry.is_none());
    }

    /// Payloads in the shapes the store writes, with every optional field
    /// and string and binary lengths across the 1-, 2- and 4-byte length
    /// encodings.
    fn written_payloads() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let empty: BTreeMap<String, String> = BTreeMap::new();
        let none: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let meta: BTreeMap<String, String> = [
            ("ip".to_owned(), "192.0.2.1".to_owned()),
            ("ua".to_owned(), "é".repeat(40)),
        ]
        .into();
        for size in [0usize, 1, 31, 32, 255, 256, 900, 65_535, 65_536] {
            let data: BTreeMap<String, Vec<u8>> = [
                ("csrf".to_owned(), encode_value(&"t".repeat(43)).unwrap()),
                (
                    "k".repeat(size.min(300)),
                    encode_value(&"x".repeat(size)).unwrap(),
                ),
                (
                    "user_id".to_owned(),
                    encode_value(&4_242_424_242u64).unwrap(),
                ),
            ]
            .into();
            let flashes: BTreeMap<String, Vec<u8>> =
                [("notice".to_owned(), encode_value("saved").unwrap())].into();
            let token = "k".repeat(43);
            for created_at in [
                0,
                7,
                127,
                128,
                255,
                65_536,
                1_800_000_000,
                i64::MAX,
                -1,
                -33,
                i64::MIN,
            ] {
                for (meta, user, flashes, csrf, expiry) in [
                    (&empty, None, &none, None, None),
                    (&meta, Some("alice"), &flashes, Some(token.as_str()), None),
                    (&empty, Some(""), &none, Some(""), None),
                    (&empty, None, &none, None, Some(StoredExpiry::Idle(60))),
                    (
                        &meta,
                        None,
                        &flashes,
                        None,
                        Some(StoredExpiry::BrowserSession),
                    ),
                ] {
                    let payload = PayloadRef {
                        created_at,
                        data: &data,
                        meta,
                        user,
                        expiry,
                        flashes,
                        csrf,
                    };
                    out.push(payload.encode().unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn the_direct_encoder_writes_what_serde_writes() {
        let empty: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let no_meta: BTreeMap<String, String> = BTreeMap::new();
        // Map, string and binary lengths across their length encodings.
        let mut many: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut many_meta: BTreeMap<String, String> = BTreeMap::new();
        for i in 0..70_000u32 {
            many.insert(format!("k{i}"), vec![1; (i % 3) as usize]);
            if i < 20 {
                many_meta.insert(format!("m{i}"), "v".repeat(i as usize * 20));
            }
        }
        let mut checked = 0;
        for bytes in written_payloads() {
            let payload = Payload::decode(&bytes).unwrap();
            let data: BTreeMap<String, Vec<u8>> = payload
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.to_vec()))
                .collect();
            let flashes: BTreeMap<String, Vec<u8>> = payload
                .flashes
                .iter()
                .map(|(k, v)| (k.clone(), v.to_vec()))
                .collect();
            let borrowed = PayloadRef {
                created_at: payload.created_at,
                data: &data,
                meta: &payload.meta,
                user: payload.user.as_deref(),
                expiry: None,
                flashes: &flashes,
                csrf: payload.csrf.as_deref(),
            };
            let mut direct = Vec::new();
            borrowed.encode_direct(&mut direct).unwrap();
            let mut serde = Vec::new();
            rmp_serde::encode::write_named(&mut serde, &borrowed).unwrap();
            assert_eq!(direct, serde);
            checked += 1;
        }
        for (data, meta, flashes) in [
            (&many, &many_meta, &empty),
            (&empty, &no_meta, &many),
            (&empty, &many_meta, &empty),
        ] {
            for created_at in [
                i64::MIN,
                -2_147_483_649,
                -32_769,
                -129,
                -33,
                -32,
                -1,
                0,
                127,
                128,
                256,
                65_536,
                4_294_967_296,
                i64::MAX,
            ] {
                let borrowed = PayloadRef {
                    created_at,
                    data,
                    meta,
                    user: Some("u"),
                    expiry: None,
                    flashes,
                    csrf: None,
                };
                let mut direct = Vec::new();
                borrowed.encode_into(&mut direct).unwrap();
                let mut serde = Vec::new();
                rmp_serde::encode::write_named(&mut serde, &borrowed).unwrap();
                assert_eq!(direct, serde, "created_at {created_at}");
                checked += 1;
            }
        }
        assert!(checked > 400, "{checked}");
    }

    /// What the direct reader accepts, serde accepts too, with the same
    /// content; it accepts every payload the store writes without an
    /// expiry.
    fn agree(bytes: &[u8]) -> bool {
        match fast::decode(bytes) {
            Some(direct) => {
                let serde = LoadedPayload::decode_with_serde(bytes);
                assert_eq!(serde.as_ref(), Some(&direct), "{bytes:02x?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_direct_reader_agrees_with_serde_on_written_payloads() {
        let payloads = written_payloads();
        let mut direct = 0;
        for bytes in &payloads {
            let with_expiry = LoadedPayload::decode_with_serde(bytes)
                .unwrap()
                .expiry
                .is_some();
            assert_eq!(agree(bytes), !with_expiry);
            direct += usize::from(!with_expiry);
            assert_eq!(
                LoadedPayload::decode(bytes),
                LoadedPayload::decode_with_serde(bytes)
            );
        }
        assert!(direct > payloads.len() / 2);
    }

    #[test]
    fn the_direct_reader_agrees_with_serde_on_damaged_payloads() {
        // Small payloads, so that every byte can be changed.
        let data: BTreeMap<String, Vec<u8>> = [
            ("n".to_owned(), encode_value(&42u32).unwrap()),
            ("s".to_owned(), encode_value("text").unwrap()),
        ]
        .into();
        let meta: BTreeMap<String, String> = [("ip".to_owned(), "192.0.2.1".to_owned())].into();
        let flashes: BTreeMap<String, Vec<u8>> =
            [("f".to_owned(), encode_value("x").unwrap())].into();
        let full = PayloadRef {
            created_at: 1_800_000_000,
            data: &data,
            meta: &meta,
            user: Some("bob"),
            expiry: None,
            flashes: &flashes,
            csrf: Some("tok"),
        };
        let bare = PayloadRef {
            created_at: 5,
            meta: &BTreeMap::new(),
            user: None,
            flashes: &BTreeMap::new(),
            csrf: None,
            ..full
        };
        let mut accepted = 0;
        for bytes in [full.encode().unwrap(), bare.encode().unwrap()] {
            for at in 0..bytes.len() {
                for value in (0..=255u8).step_by(3).chain([0xc0, 0xc4, 0xd9, 0xde, 0xdf]) {
                    let mut changed = bytes.clone();
                    changed[at] = value;
                    accepted += usize::from(agree(&changed));
                    assert_eq!(
                        LoadedPayload::decode(&changed),
                        LoadedPayload::decode_with_serde(&changed)
                    );
                }
                let mut removed = bytes.clone();
                removed.remove(at);
                agree(&removed);
                agree(&bytes[..at]);
                let mut inserted = bytes.clone();
                inserted.insert(at, 0xc0);
                agree(&inserted);
            }
            // Bytes left over: serde ignores them, the direct reader defers.
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(!agree(&longer));
            assert!(LoadedPayload::decode(&longer).is_some());
        }
        // Plenty of changed bytes still decode (other values, other keys).
        assert!(accepted > 100, "{accepted}");
        // A repeated field: serde refuses, and so does `decode`.
        let mut twice = vec![0x83, 0xa1, b'c', 1, 0xa1, b'd', 0x80, 0xa1, b'c', 2];
        assert_eq!(LoadedPayload::decode(&twice), None);
        twice[8] = b'k';
        twice[9] = 0xc0;
        assert!(agree(&twice));
    }

    #[test]
    fn type_mismatch_is_a_decode_error() {
        let bytes = encode_value("text").unwrap();
        let err = decode_value::<u64>("k", &bytes).unwrap_err();
        assert!(matches!(err, Error::Decode { ref key, .. } if key == "k"));
    }
}
