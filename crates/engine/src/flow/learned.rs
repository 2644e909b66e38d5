//! [`LearnedNames`]: addresses learned from DNS answers for names that matched a rule, so a
//! later flow with no name of its own (raw TCP, ECH) is still attributed. Bounded in entries,
//! each kept for the record's TTL (within [`MIN_TTL_SECONDS`]..[`MAX_TTL_SECONDS`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::stats::{Family, MetricSink};

const LEARNED: Family = Family {
    name: "telestrip_learned_addresses",
    help: "Addresses learned from DNS answers for matched names.",
    labels: &[],
};

/// Clients keep using an address a little past its TTL; a floor keeps short-TTL CDN answers
/// useful for the connection that follows the lookup.
pub const MIN_TTL_SECONDS: u64 = 60;
/// Longest an address stays attributed without a fresh answer.
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// When something learned at capture time `time` from a record with `ttl` expires, in Unix
/// seconds: the TTL within [`MIN_TTL_SECONDS`]..[`MAX_TTL_SECONDS`].
pub fn expiry(ttl: u32, time: Duration) -> u64 {
    time.as_secs() + u64::from(ttl).clamp(MIN_TTL_SECONDS, MAX_TTL_SECONDS)
}

struct Learned {
    name: Box<str>,
    expires: u64,
    /// Capture time of the first answer that taught it.
    since: Duration,
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

    /// Reports how many addresses are learned now to `sink`.
    pub fn export_metrics(&self, sink: &mut dyn MetricSink) {
        sink.gauge(&LEARNED, &[], self.len() as u64);
    }

    /// Records that `addr` serves `name` for `ttl` seconds from capture time `time`.
    pub fn learn(&self, addr: IpAddr, name: &str, ttl: u32, time: Duration) {
        let now = time.as_secs();
        let expires = expiry(ttl, time);
        if let Some(mut existing) = self.map.get_mut(&addr) {
            if &*existing.name != name {
                existing.name = name.into();
            }
            existing.expires = existing.expires.max(expires);
            existing.since = existing.since.min(time);
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
            Learned {
                name,
                expires,
                since: time,
            }
        });
        if inserted {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls `use_name` with the name learned for `addr` at capture time `time`, if any:
    /// learned no later than `time` (a source that spreads packets over threads may judge a
    /// flow after a later answer was read) and not expired.
    pub fn with_name<T>(
        &self,
        addr: IpAddr,
        time: Duration,
        use_name: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        let entry = self.map.get(&addr)?;
        if entry.expires < time.as_secs() || entry.since > time {
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

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_name_counts_only_from_the_answer_on() {
        let table = LearnedNames::new(8);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        table.learn(addr, "t.example", 300, Duration::from_micros(1_000_000_700));
        assert_eq!(
            table.with_name(addr, Duration::from_micros(1_000_000_699), |_| ()),
            None
        );
        assert!(table
            .with_name(addr, Duration::from_micros(1_000_000_700), |_| ())
            .is_some());
        // A later answer does not move the start.
        table.learn(addr, "t.example", 300, secs(2000));
        assert!(table
            .with_name(addr, Duration::from_micros(1_000_000_700), |_| ())
            .is_some());
    }

    #[test]
    fn remembers_a_name_for_its_ttl() {
        let table = LearnedNames::new(8);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        table.learn(addr, "t.example", 300, secs(1000));
        assert_eq!(
            table.with_name(addr, secs(1200), str::to_string).as_deref(),
            Some("t.example")
        );
        assert_eq!(table.with_name(addr, secs(1301), str::to_string), None);
    }

    #[test]
    fn short_ttls_are_raised_to_the_floor() {
        let table = LearnedNames::new(8);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        table.learn(addr, "t.example", 0, secs(1000));
        assert!(table
            .with_name(addr, secs(1000 + MIN_TTL_SECONDS), |_| ())
            .is_some());
    }

    #[test]
    fn refuses_new_entries_when_full_and_counts_them() {
        let table = LearnedNames::new(2);
        for i in 1..=3u8 {
            table.learn(IpAddr::from([192, 0, 2, i]), "t.example", 300, secs(1000));
        }
        assert_eq!(table.len(), 2);
        assert_eq!(table.refused.load(Ordering::Relaxed), 1);
        // Once the old ones expire there is room again.
        table.learn(
            IpAddr::from([192, 0, 2, 9]),
            "t.example",
            300,
            secs(1000 + 301),
        );
        assert_eq!(table.len(), 1);
    }
}
