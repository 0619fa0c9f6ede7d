//! The cache of derived record keys, so that a steady-state load pays no
//! HKDF: a bounded map per (key id, salt), read-mostly behind a read-write
//! lock.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use ring::aead::LessSafeKey;
use zeroize::Zeroize;

use super::keys::{Key, Salt};

/// Record keys derived from (master key, salt), derived once and then
/// cached. Read-mostly (a steady-state load only reads it), so concurrent
/// requests share a read lock instead of queueing on a mutex.
pub(super) struct RecordKeys(RwLock<KeyCache>);

impl RecordKeys {
    /// A cache of at most `capacity` keys (0: derive on every use).
    pub(super) fn new(capacity: usize) -> Self {
        RecordKeys(RwLock::new(KeyCache::new(capacity)))
    }

    /// Runs `f` with the record key of (`key`, `salt`), derived once and
    /// then cached. A cached key is used under the cache's read lock, in
    /// place: no reference count to bump on a shared cache line per use.
    pub(super) fn with<T>(&self, key: &Key, salt: &Salt, f: impl FnOnce(&LessSafeKey) -> T) -> T {
        let cache_key = (key.id(), *salt);
        {
            // A panic while holding this lock cannot leave the map inconsistent.
            let cache = self.0.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = cache.get(&cache_key) {
                return f(found);
            }
        }
        let derived = Box::new(key.record_key(salt));
        let out = f(&derived);
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, derived);
        out
    }
}

/// A bounded map of derived record keys, evicting the oldest insert first.
struct KeyCache {
    map: HashMap<(u32, Salt), Box<LessSafeKey>>,
    order: VecDeque<(u32, Salt)>,
    capacity: usize,
}

impl KeyCache {
    fn new(capacity: usize) -> Self {
        KeyCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn get(&self, key: &(u32, Salt)) -> Option<&LessSafeKey> {
        self.map.get(key).map(|k| &**k)
    }

    fn insert(&mut self, key: (u32, Salt), value: Box<LessSafeKey>) {
        if self.capacity == 0 || self.map.contains_key(&key) {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key);
        self.map.insert(key, value);
    }
}

impl Drop for KeyCache {
    fn drop(&mut self) {
        for (_, salt) in self.order.iter_mut() {
            salt.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::Key;

    #[test]
    fn cache_is_bounded() {
        let mut cache = KeyCache::new(2);
        let key = Key::generate();
        for i in 0..5u8 {
            cache.insert((1, [i; 16]), Box::new(key.record_key(&[i; 16])));
        }
        assert_eq!(cache.map.len(), 2);
        assert!(cache.get(&(1, [4; 16])).is_some());
        assert!(cache.get(&(1, [0; 16])).is_none());
    }
}
