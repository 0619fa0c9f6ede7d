//! Wiping secrets from memory before it is freed, at the speed of a
//! `memset`.
//!
//! `zeroize` clears a `Vec<u8>` or a `String` one volatile byte store at a
//! time (its `Vec` impl zeroizes the elements through their iterator),
//! which a load pays for every copy of the session's bytes. Its impl for
//! byte slices (and for the uninitialized spare capacity) fills the bytes
//! and then hands them to an optimization barrier, which the compiler
//! must assume reads them, so the fill cannot be elided either. These
//! helpers wipe through that path: every byte of the allocation,
//! initialized or spare, as `zeroize` does.

use zeroize::Zeroize;

/// Zeroes every byte of `bytes`' allocation (its contents and its spare
/// capacity), then empties it (the allocation is kept, as `zeroize` keeps it).
pub(crate) fn bytes(bytes: &mut Vec<u8>) {
    zero(bytes);
    bytes.clear();
}

/// Zeroes every byte of `bytes`' allocation, leaving its length alone.
fn zero(bytes: &mut Vec<u8>) {
    bytes.spare_capacity_mut().zeroize();
    bytes.as_mut_slice().zeroize();
}

/// Zeroes every byte of `text`'s allocation, and leaves it empty (its
/// allocation is freed).
pub(crate) fn string(text: &mut String) {
    let mut buffer = std::mem::take(text).into_bytes();
    bytes(&mut buffer);
}

/// A byte buffer that is wiped (see [`bytes`]) when dropped: what
/// `zeroize::Zeroizing<Vec<u8>>` does, without the byte-at-a-time loop.
pub(crate) struct WipedBytes(pub(crate) Vec<u8>);

impl Drop for WipedBytes {
    fn drop(&mut self) {
        bytes(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroes_the_contents_and_keeps_the_allocation() {
        let mut buffer = Vec::with_capacity(64);
        buffer.extend_from_slice(b"secret session value");
        zero(&mut buffer);
        assert_eq!(buffer, vec![0u8; 20]);
        buffer.extend_from_slice(b"more");
        let capacity = buffer.capacity();
        bytes(&mut buffer);
        assert!(buffer.is_empty());
        assert_eq!(buffer.capacity(), capacity);
    }

    #[test]
    fn a_wiped_string_is_empty_and_wiped_bytes_deref() {
        let mut text = String::from("alice@example.com");
        string(&mut text);
        assert!(text.is_empty());
        let wiped = WipedBytes(b"abc".to_vec());
        assert_eq!(wiped.0, b"abc");
    }
}
