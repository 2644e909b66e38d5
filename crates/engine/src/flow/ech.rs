//! [`EchConfigs`]: the ECH configurations servers announce in DNS HTTPS records (config_id
//! per public name), so a ClientHello's ECH extension can be told apart: real ECH uses an
//! announced config_id with the matching public name as its outer SNI, GREASE ECH (sent by
//! browsers on every connection) a random one. Bounded, each entry kept for the record's
//! TTL like learned addresses.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use super::learned::expiry;

pub struct EchConfigs {
    /// (hash of the public name, config_id) → (expiry second, capture time first seen).
    map: DashMap<(u64, u8), (u64, Duration), foldhash::fast::RandomState>,
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

    /// Records that `config_id` is announced for `public_name_tag` for `ttl` seconds from
    /// capture time `time`.
    pub fn learn(&self, public_name_tag: u64, config_id: u8, ttl: u32, time: Duration) {
        let now = time.as_secs();
        let expires = expiry(ttl, time);
        let key = (public_name_tag, config_id);
        if let Some(mut existing) = self.map.get_mut(&key) {
            existing.0 = existing.0.max(expires);
            existing.1 = existing.1.min(time);
            return;
        }
        if self.len() >= self.max_entries {
            self.map.retain(|_, (expires, _)| *expires > now);
            self.len.store(self.map.len(), Ordering::Relaxed);
            if self.len() >= self.max_entries {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if self.map.insert(key, (expires, time)).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `config_id` is a live announced configuration of `public_name_tag` at
    /// capture time `time`: announced no later than `time` (a source that spreads packets
    /// over threads may judge a flow after a later announcement was read) and not expired.
    pub fn contains(&self, public_name_tag: u64, config_id: u8, time: Duration) -> bool {
        self.map
            .get(&(public_name_tag, config_id))
            .is_some_and(|entry| entry.0 > time.as_secs() && entry.1 <= time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_configuration_counts_only_from_its_announcement_on() {
        let configs = EchConfigs::new(8);
        configs.learn(7, 1, 300, Duration::from_millis(1_000_500));
        assert!(!configs.contains(7, 1, Duration::from_millis(1_000_499)));
        assert!(configs.contains(7, 1, Duration::from_millis(1_000_500)));
    }

    #[test]
    fn configurations_are_kept_for_their_ttl_and_bounded() {
        let configs = EchConfigs::new(2);
        configs.learn(7, 1, 300, secs(1000));
        assert!(configs.contains(7, 1, secs(1200)));
        assert!(!configs.contains(7, 2, secs(1200)));
        assert!(!configs.contains(8, 1, secs(1200)));
        assert!(!configs.contains(7, 1, secs(1300)));
        configs.learn(7, 2, 300, secs(1000));
        configs.learn(7, 3, 300, secs(1000));
        assert_eq!(configs.len(), 2);
        assert_eq!(configs.refused.load(Ordering::Relaxed), 1);
        // Expired entries make room.
        configs.learn(7, 3, 300, secs(2000));
        assert!(configs.contains(7, 3, secs(2100)));
    }
}
