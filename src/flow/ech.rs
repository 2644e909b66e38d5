//! [`EchConfigs`]: the ECH configurations servers announce in DNS HTTPS records (config_id
//! per public name), so a ClientHello's ECH extension can be told apart: real ECH uses an
//! announced config_id with the matching public name as its outer SNI, GREASE ECH (sent by
//! browsers on every connection) a random one. Bounded, each entry kept for the record's
//! TTL like learned addresses.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use super::learned::{MAX_TTL_SECONDS, MIN_TTL_SECONDS};

pub struct EchConfigs {
    /// (hash of the public name, config_id) → expiry time.
    map: DashMap<(u64, u8), u64, foldhash::fast::RandomState>,
    len: AtomicUsize,
    max_entries: usize,
    /// Configurations not kept because the table was full.
    pub refused: AtomicU64,
}

impl EchConfigs {
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: DashMap::default(),
            len: AtomicUsize::new(0),
            max_entries,
            refused: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that `config_id` is announced for `public_name_tag` for `ttl` seconds.
    pub fn learn(&self, public_name_tag: u64, config_id: u8, ttl: u32, now: u64) {
        let expires = now + u64::from(ttl).clamp(MIN_TTL_SECONDS, MAX_TTL_SECONDS);
        let key = (public_name_tag, config_id);
        if let Some(mut existing) = self.map.get_mut(&key) {
            *existing = (*existing).max(expires);
            return;
        }
        if self.len() >= self.max_entries {
            self.map.retain(|_, expires| *expires > now);
            self.len.store(self.map.len(), Ordering::Relaxed);
            if self.len() >= self.max_entries {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if self.map.insert(key, expires).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `config_id` is a live announced configuration of `public_name_tag`.
    pub fn contains(&self, public_name_tag: u64, config_id: u8, now: u64) -> bool {
        self.map
            .get(&(public_name_tag, config_id))
            .is_some_and(|expires| *expires > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_kept_for_their_ttl_and_bounded() {
        let configs = EchConfigs::new(2);
        configs.learn(7, 1, 300, 1000);
        assert!(configs.contains(7, 1, 1200));
        assert!(!configs.contains(7, 2, 1200));
        assert!(!configs.contains(8, 1, 1200));
        assert!(!configs.contains(7, 1, 1300));
        configs.learn(7, 2, 300, 1000);
        configs.learn(7, 3, 300, 1000);
        assert_eq!(configs.len(), 2);
        assert_eq!(configs.refused.load(Ordering::Relaxed), 1);
        // Expired entries make room.
        configs.learn(7, 3, 300, 2000);
        assert!(configs.contains(7, 3, 2100));
    }
}
