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
#[derive(Debug, Default, Deserialize)]
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
    pub fn decode(bytes: &[u8]) -> Option<LoadedPayload> {
        rmp_serde::from_slice(bytes).ok()
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

    /// Appends the encoded payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        Ok(rmp_serde::encode::write_named(out, self)?)
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

    #[test]
    fn type_mismatch_is_a_decode_error() {
        let bytes = encode_value("text").unwrap();
        let err = decode_value::<u64>("k", &bytes).unwrap_err();
        assert!(matches!(err, Error::Decode { ref key, .. } if key == "k"));
    }
}
