//! The compiled name table: exact names and `*.` suffixes of every rule, as keyed 64-bit
//! fingerprints in one sorted array.
//!
//! The names themselves are not kept: the rule files hold them for `explain` and lint. An
//! entry is the name's fingerprint and its exact and suffix rules (16 bytes); a directory of
//! the first entry per fingerprint prefix (4 to 8 entries per prefix, about 1 byte per
//! entry) makes a lookup one or two cache lines. A lookup fingerprints the full name (exact
//! entries) and then each parent suffix (suffix entries): n labels, n probes, whatever the
//! size. About 17 bytes per domain (see `benches/`).
//!
//! The fingerprint is SipHash-1-3 under a key drawn per process, so names on the wire cannot
//! be chosen to collide with a listed name (a collision would let an allow rule's entry
//! answer for another name); by chance, two of a million names share a fingerprint once in
//! tens of millions of rulesets, and a name not listed matches with probability n / 2^64.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashMap;

/// Index of a rule in its [`super::RuleSet`].
pub type RuleIndex = u32;

/// No rule in this slot.
const NONE: u32 = u32::MAX;
/// High bit: the slot holds an index into `spill` (several rules share the name).
const SPILL: u32 = 1 << 31;
/// Entries per directory slot, at least (at most twice as many).
const PER_SLOT: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    fingerprint: u64,
    exact: u32,
    suffix: u32,
}

/// How a name matched an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameHit {
    Exact,
    /// Matched `*.suffix`; holds the suffix length (longer = more specific).
    Suffix(usize),
}

pub struct DomainTable {
    /// Sorted by fingerprint once [`DomainTable::shrink_to_fit`] has run.
    entries: Vec<Entry>,
    /// `directory[p]` is the first entry whose fingerprint's top `prefix_bits` are `p`.
    directory: Vec<u32>,
    prefix_bits: u32,
    /// While building: fingerprint to entry, so a repeated name adds to its entry.
    building: HashMap<u64, u32>,
    spill: Vec<Box<[RuleIndex]>>,
    key: RandomState,
}

impl Default for DomainTable {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl std::fmt::Debug for DomainTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainTable")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl DomainTable {
    pub fn with_capacity(names: usize) -> Self {
        Self {
            entries: Vec::with_capacity(names),
            directory: vec![0, 0],
            prefix_bits: 0,
            building: HashMap::with_capacity(names),
            spill: Vec::new(),
            key: RandomState::new(),
        }
    }

    fn fingerprint(&self, name: &[u8]) -> u64 {
        self.key.hash_one(name)
    }

    /// Adds `name` (normalised, at most 253 bytes) for `rule`, as exact or suffix entry.
    /// Lookups see it once [`DomainTable::shrink_to_fit`] has run.
    pub fn insert(&mut self, name: &[u8], suffix: bool, rule: RuleIndex) {
        let fingerprint = self.fingerprint(name);
        let next = self.entries.len() as u32;
        let index = *self.building.entry(fingerprint).or_insert(next);
        if index == next {
            self.entries.push(Entry {
                fingerprint,
                exact: NONE,
                suffix: NONE,
            });
        }
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return;
        };
        let slot = if suffix {
            &mut entry.suffix
        } else {
            &mut entry.exact
        };
        *slot = add_rule(&mut self.spill, *slot, rule);
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Ends building: sorts the entries, makes the directory, drops what only building
    /// needed.
    pub fn shrink_to_fit(&mut self) {
        self.building = HashMap::new();
        self.entries.sort_unstable_by_key(|e| e.fingerprint);
        self.entries.shrink_to_fit();
        let slots = (self.entries.len() / PER_SLOT).max(1);
        // The largest power of two not above `slots`: 4 to 8 entries per slot.
        self.prefix_bits = usize::BITS - 1 - slots.leading_zeros();
        let mut directory = Vec::with_capacity((1 << self.prefix_bits) + 1);
        let mut at = 0usize;
        for prefix in 0..(1u64 << self.prefix_bits) {
            while self
                .entries
                .get(at)
                .is_some_and(|e| self.prefix_of(e.fingerprint) < prefix)
            {
                at += 1;
            }
            directory.push(at as u32);
        }
        directory.push(self.entries.len() as u32);
        self.directory = directory;
    }

    fn prefix_of(&self, fingerprint: u64) -> u64 {
        fingerprint
            .checked_shr(u64::BITS - self.prefix_bits)
            .unwrap_or(0)
    }

    /// Heap bytes held (entries, directory, spill lists).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.directory.capacity() * std::mem::size_of::<u32>()
            + self.building.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
            + self
                .spill
                .iter()
                .map(|s| s.len() * std::mem::size_of::<RuleIndex>() + 16)
                .sum::<usize>()
    }

    /// Calls `visit` for every rule whose entry matches `name` (normalised).
    pub fn for_each_match(&self, name: &[u8], mut visit: impl FnMut(RuleIndex, NameHit)) {
        if self.entries.is_empty() {
            return;
        }
        if let Some(entry) = self.find(name) {
            self.each_rule(entry.exact, |rule| visit(rule, NameHit::Exact));
        }
        let mut rest = name;
        while let Some(dot) = rest.iter().position(|&b| b == b'.') {
            rest = rest.get(dot + 1..).unwrap_or(&[]);
            if let Some(entry) = self.find(rest) {
                self.each_rule(entry.suffix, |rule| {
                    visit(rule, NameHit::Suffix(rest.len()))
                });
            }
        }
    }

    /// Rules listing `name` itself, as (exact rules, suffix rules): for `rules explain` hints.
    pub fn listed(&self, name: &[u8]) -> (Vec<RuleIndex>, Vec<RuleIndex>) {
        let mut exact = Vec::new();
        let mut suffix = Vec::new();
        if let Some(entry) = self.find(name) {
            self.each_rule(entry.exact, |r| exact.push(r));
            self.each_rule(entry.suffix, |r| suffix.push(r));
        }
        (exact, suffix)
    }

    fn find(&self, name: &[u8]) -> Option<&Entry> {
        let fingerprint = self.fingerprint(name);
        let prefix = self.prefix_of(fingerprint) as usize;
        let from = *self.directory.get(prefix)? as usize;
        let to = *self.directory.get(prefix + 1)? as usize;
        self.entries
            .get(from..to)?
            .iter()
            .find(|e| e.fingerprint == fingerprint)
    }

    fn each_rule(&self, slot: u32, mut visit: impl FnMut(RuleIndex)) {
        if slot == NONE {
            return;
        }
        if slot & SPILL == 0 {
            visit(slot);
            return;
        }
        if let Some(rules) = self.spill.get((slot & !SPILL) as usize) {
            rules.iter().copied().for_each(visit);
        }
    }
}

fn add_rule(spill: &mut Vec<Box<[RuleIndex]>>, slot: u32, rule: RuleIndex) -> u32 {
    if slot == NONE || slot == rule {
        return rule;
    }
    if slot & SPILL == 0 {
        spill.push(Box::new([slot, rule]));
        return (spill.len() as u32 - 1) | SPILL;
    }
    if let Some(list) = spill.get_mut((slot & !SPILL) as usize) {
        if !list.contains(&rule) {
            let mut grown = list.to_vec();
            grown.push(rule);
            *list = grown.into_boxed_slice();
        }
    }
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(entries: &[(&str, bool, RuleIndex)]) -> DomainTable {
        let mut table = DomainTable::with_capacity(entries.len());
        for (name, suffix, rule) in entries {
            table.insert(name.as_bytes(), *suffix, *rule);
        }
        table.shrink_to_fit();
        table
    }

    fn matches(table: &DomainTable, name: &str) -> Vec<(RuleIndex, NameHit)> {
        let mut hits = Vec::new();
        table.for_each_match(name.as_bytes(), |r, h| hits.push((r, h)));
        hits
    }

    #[test]
    fn exact_entry_matches_only_that_name() {
        let table = built(&[("host.example", false, 7)]);
        assert_eq!(matches(&table, "host.example"), vec![(7, NameHit::Exact)]);
        assert!(matches(&table, "a.host.example").is_empty());
        assert!(matches(&table, "example").is_empty());
    }

    #[test]
    fn suffix_entry_matches_names_below_but_not_itself() {
        let table = built(&[("example", true, 1)]);
        assert!(matches(&table, "example").is_empty());
        assert_eq!(matches(&table, "a.example"), vec![(1, NameHit::Suffix(7))]);
        assert_eq!(
            matches(&table, "b.a.example"),
            vec![(1, NameHit::Suffix(7))]
        );
        assert!(matches(&table, "notexample").is_empty());
    }

    #[test]
    fn one_name_can_carry_several_rules() {
        let table = built(&[
            ("x.example", false, 1),
            ("x.example", false, 2),
            ("x.example", false, 3),
            ("x.example", true, 4),
        ]);
        let hits = matches(&table, "x.example");
        assert_eq!(hits.len(), 3);
        assert_eq!(
            matches(&table, "y.x.example"),
            vec![(4, NameHit::Suffix(9))]
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn an_empty_table_matches_nothing() {
        let table = built(&[]);
        assert!(matches(&table, "a.example").is_empty());
        assert!(DomainTable::default().listed(b"a.example").0.is_empty());
    }

    #[test]
    fn a_large_table_finds_every_listed_name_and_nothing_else() {
        let listed: Vec<String> = (0..200_000)
            .map(|i| format!("n{i}.listed.example"))
            .collect();
        let mut table = DomainTable::with_capacity(listed.len());
        for (i, name) in listed.iter().enumerate() {
            table.insert(name.as_bytes(), i % 2 == 1, i as RuleIndex);
        }
        table.shrink_to_fit();
        assert_eq!(table.len(), listed.len());
        for (i, name) in listed.iter().enumerate() {
            let (exact, suffix) = table.listed(name.as_bytes());
            let found = if i % 2 == 1 { suffix } else { exact };
            assert_eq!(found, [i as RuleIndex], "{name}");
        }
        // Names near the listed ones: no entry answers for them.
        for i in 0..1_000_000 {
            let other = format!("n{i}.listed.exampl");
            assert!(
                table.listed(other.as_bytes()) == (vec![], vec![]),
                "{other}"
            );
        }
        // About 17 bytes per name: the entry and a share of the directory.
        let per_name = table.heap_bytes() as f64 / listed.len() as f64;
        assert!(per_name < 18.0, "{per_name} bytes per name");
    }

    #[test]
    fn the_directory_covers_every_size() {
        for size in [1usize, 3, 4, 5, 7, 8, 9, 63, 64, 65, 1000] {
            let names: Vec<String> = (0..size).map(|i| format!("h{i}.example")).collect();
            let entries: Vec<(&str, bool, RuleIndex)> =
                names.iter().map(|n| (n.as_str(), false, 1)).collect();
            let table = built(&entries);
            for name in &names {
                assert_eq!(
                    matches(&table, name),
                    [(1, NameHit::Exact)],
                    "{size} {name}"
                );
            }
            let slots = table.directory.len() - 1;
            assert!(slots.is_power_of_two() && slots * PER_SLOT <= size.max(PER_SLOT));
        }
    }
}
