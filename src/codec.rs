//! MessagePack encoding of session values and of the whole session payload.
//!
//! Each value is encoded on `insert` (so type errors surface there) and kept
//! as bytes, so a conflicting write can be merged key by key. The payload that
//! gets encrypted is a MessagePack map holding the creation time, the values
//! and, when tracked, metadata.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{Error, Result};

/// Encodes one session value.
pub(crate) fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    Ok(rmp_serde::to_vec_named(value)?)
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
}

impl Payload {
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
    fn type_mismatch_is_a_decode_error() {
        let bytes = encode_value("text").unwrap();
        let err = decode_value::<u64>("k", &bytes).unwrap_err();
        assert!(matches!(err, Error::Decode { ref key, .. } if key == "k"));
    }
}
