//! [`LearnedNames`]: addresses learned from DNS answers for names that matched a rule, so a
//! later flow with no name of its own (raw TCP, ECH) is still attributed. Bounded in entries,
//! each kept for the record's TTL (within [`MIN_TTL_SECONDS`]..[`MAX_TTL_SECONDS`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

/// Clients keep using an address a little past its TTL; a floor keeps short-TTL CDN answers
/// useful for the connection that follows the lookup.
pub const MIN_TTL_SECONDS: u64 = 60;
/// Longest an address stays attributed without a fresh answer.
pub const MAX_TTL_SECONDS: u64 = 86_400;

struct Learned {
    name: Box<str>,
    expires: u64,
}

pub struct LearnedNames {
    map: DashMap<IpAddr, Learned, foldhash::fast::RandomState>,
    len: AtomicUsize,
    max_entries: usize,
    /// Answers not learned because the table was full.
    pub refused: AtomicU64,
}

impl LearnedNames {
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

    /// Records that `addr` serves `name` for `ttl` seconds from `now`.
    pub fn learn(&self, addr: IpAddr, name: &str, ttl: u32, now: u64) {
        let expires = now + u64::from(ttl).clamp(MIN_TTL_SECONDS, MAX_TTL_SECONDS);
        if let Some(mut existing) = self.map.get_mut(&addr) {
            if &*existing.name != name {
                existing.name = name.into();
            }
            existing.expires = existing.expires.max(expires);
            return;
        }
        if self.len() >= self.max_entries {
            self.sweep(now);
            if self.len() >= self.max_entries {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let name: Box<str> = name.into();
        let mut inserted = false;
        self.map.entry(addr).or_insert_with(|| {
            inserted = true;
            Learned { name, expires }
        });
        if inserted {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls `use_name` with the name learned for `addr`, if any and not expired.
    pub fn with_name<T>(
        &self,
        addr: IpAddr,
        now: u64,
        use_name: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        let entry = self.map.get(&addr)?;
        if entry.expires < now {
            return None;
        }
        Some(use_name(&entry.name))
    }

    /// Drops expired entries.
    pub fn sweep(&self, now: u64) {
        let mut removed = 0usize;
        self.map.retain(|_, learned| {
            let keep = learned.expires >= now;
            removed += usize::from(!keep);
            keep
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_name_for_its_ttl() {
        let table = LearnedNames::new(8);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        table.learn(addr, "t.example", 300, 1000);
        assert_eq!(
            table.with_name(addr, 1200, str::to_string).as_deref(),
            Some("t.example")
        );
        assert_eq!(table.with_name(addr, 1301, str::to_string), None);
    }

    #[test]
    fn short_ttls_are_raised_to_the_floor() {
        let table = LearnedNames::new(8);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        table.learn(addr, "t.example", 0, 1000);
        assert!(table
            .with_name(addr, 1000 + MIN_TTL_SECONDS, |_| ())
            .is_some());
    }

    #[test]
    fn refuses_new_entries_when_full_and_counts_them() {
        let table = LearnedNames::new(2);
        for i in 1..=3u8 {
            table.learn(IpAddr::from([192, 0, 2, i]), "t.example", 300, 1000);
        }
        assert_eq!(table.len(), 2);
        assert_eq!(table.refused.load(Ordering::Relaxed), 1);
        // Once the old ones expire there is room again.
        table.learn(IpAddr::from([192, 0, 2, 9]), "t.example", 300, 1000 + 301);
        assert_eq!(table.len(), 1);
    }
}
