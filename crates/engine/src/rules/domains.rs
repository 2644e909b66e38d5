//! The compiled name table: exact names and `*.` suffixes of every rule, as keyed
//! fingerprints in sorted arrays.
//!
//! The names themselves are not kept: the rule files hold them for `explain` and lint. An
//! entry is a 64-bit fingerprint of the name (foldhash under a seed drawn per process: fast,
//! it locates and compares), a 32-bit check (SipHash-1-3 under a key drawn per process,
//! computed only when a fingerprint matches) and the name's exact and suffix rules: 20
//! bytes, in three arrays sorted by fingerprint. A directory of the first entry per
//! fingerprint prefix (4 to 8 entries per prefix, about 1 byte per entry) makes a lookup
//! one cache line of fingerprints. A lookup fingerprints the full name (exact entries) and
//! then each parent suffix (suffix entries): n labels, n probes, whatever the size. About
//! 21 bytes per domain (see `benches/`).
//!
//! A name not listed matches only if both its fingerprint and its check equal a listed
//! name's: by chance once in 2^96 / n lookups; by design only with both secret keys, so
//! names on the wire cannot be chosen to collide with a listed one (a collision would let
//! an allow rule's entry answer for another name).

use std::hash::{BuildHasher, RandomState};

/// Index of a rule in its [`super::RuleSet`].
pub type RuleIndex = u32;

/// No rule in this slot.
const NONE: u32 = u32::MAX;
/// High bit: the slot holds an index into `spill` (several rules share the name).
const SPILL: u32 = 1 << 31;
/// Entries per directory slot, at least (at most twice as many).
const PER_SLOT: usize = 4;

/// The exact and suffix rules of one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slots {
    exact: u32,
    suffix: u32,
}

/// One insertion, before the table is built.
#[derive(Clone, Copy, Debug)]
struct Pending {
    fingerprint: u64,
    check: u32,
    suffix: bool,
    rule: RuleIndex,
}

/// How a name matched an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameHit {
    Exact,
    /// Matched `*.suffix`; holds the suffix length (longer = more specific).
    Suffix(usize),
}

pub struct DomainTable {
    /// Sorted once [`DomainTable::shrink_to_fit`] has run; `checks` and `slots` in the same
    /// order.
    fingerprints: Vec<u64>,
    checks: Vec<u32>,
    slots: Vec<Slots>,
    /// `directory[p]` is the first entry whose fingerprint's top `prefix_bits` are `p`.
    directory: Vec<u32>,
    prefix_bits: u32,
    /// While building: every insertion, merged per name when building ends.
    building: Vec<Pending>,
    spill: Vec<Box<[RuleIndex]>>,
    locate: foldhash::fast::RandomState,
    confirm: RandomState,
}

impl Default for DomainTable {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl std::fmt::Debug for DomainTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainTable")
            .field("entries", &self.fingerprints.len())
            .finish()
    }
}

impl DomainTable {
    pub fn with_capacity(names: usize) -> Self {
        Self {
            fingerprints: Vec::with_capacity(names),
            checks: Vec::with_capacity(names),
            slots: Vec::with_capacity(names),
            directory: vec![0, 0],
            prefix_bits: 0,
            building: Vec::with_capacity(names),
            spill: Vec::new(),
            locate: foldhash::fast::RandomState::default(),
            confirm: RandomState::new(),
        }
    }

    fn fingerprint(&self, name: &[u8]) -> u64 {
        self.locate.hash_one(name)
    }

    fn check(&self, name: &[u8]) -> u32 {
        self.confirm.hash_one(name) as u32
    }

    /// Adds `name` (normalised, at most 253 bytes) for `rule`, as exact or suffix entry.
    /// Lookups and [`DomainTable::len`] see it once [`DomainTable::shrink_to_fit`] has run.
    pub fn insert(&mut self, name: &[u8], suffix: bool, rule: RuleIndex) {
        self.building.push(Pending {
            fingerprint: self.fingerprint(name),
            check: self.check(name),
            suffix,
            rule,
        });
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Ends building: sorts the insertions by fingerprint, merges those of one name into
    /// one entry, makes the directory.
    pub fn shrink_to_fit(&mut self) {
        let mut pending = std::mem::take(&mut self.building);
        pending.sort_unstable_by_key(|p| (p.fingerprint, p.check));
        for p in &pending {
            let same = self.fingerprints.last() == Some(&p.fingerprint)
                && self.checks.last() == Some(&p.check);
            if !same {
                self.fingerprints.push(p.fingerprint);
                self.checks.push(p.check);
                self.slots.push(Slots {
                    exact: NONE,
                    suffix: NONE,
                });
            }
            if let Some(entry) = self.slots.last_mut() {
                let slot = if p.suffix {
                    &mut entry.suffix
                } else {
                    &mut entry.exact
                };
                *slot = add_rule(&mut self.spill, *slot, p.rule);
            }
        }
        drop(pending);
        self.fingerprints.shrink_to_fit();
        self.checks.shrink_to_fit();
        self.slots.shrink_to_fit();
        let slots = (self.slots.len() / PER_SLOT).max(1);
        // The largest power of two not above `slots`: 4 to 8 entries per slot.
        self.prefix_bits = usize::BITS - 1 - slots.leading_zeros();
        let mut directory = Vec::with_capacity((1 << self.prefix_bits) + 1);
        let mut at = 0usize;
        for prefix in 0..(1u64 << self.prefix_bits) {
            while self
                .fingerprints
                .get(at)
                .is_some_and(|&f| self.prefix_of(f) < prefix)
            {
                at += 1;
            }
            directory.push(at as u32);
        }
        directory.push(self.slots.len() as u32);
        self.directory = directory;
    }

    fn prefix_of(&self, fingerprint: u64) -> u64 {
        fingerprint
            .checked_shr(u64::BITS - self.prefix_bits)
            .unwrap_or(0)
    }

    /// Heap bytes held (entries, directory, spill lists).
    pub fn heap_bytes(&self) -> usize {
        self.fingerprints.capacity() * std::mem::size_of::<u64>()
            + self.checks.capacity() * std::mem::size_of::<u32>()
            + self.slots.capacity() * std::mem::size_of::<Slots>()
            + self.directory.capacity() * std::mem::size_of::<u32>()
            + self.building.capacity() * std::mem::size_of::<Pending>()
            + self
                .spill
                .iter()
                .map(|s| s.len() * std::mem::size_of::<RuleIndex>() + 16)
                .sum::<usize>()
    }

    /// Calls `visit` for every rule whose entry matches `name` (normalised).
    pub fn for_each_match(&self, name: &[u8], mut visit: impl FnMut(RuleIndex, NameHit)) {
        if self.slots.is_empty() {
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

    fn find(&self, name: &[u8]) -> Option<Slots> {
        let fingerprint = self.fingerprint(name);
        let prefix = self.prefix_of(fingerprint) as usize;
        let from = *self.directory.get(prefix)? as usize;
        let to = *self.directory.get(prefix + 1)? as usize;
        let mut check = None;
        for (offset, _) in self
            .fingerprints
            .get(from..to)?
            .iter()
            .enumerate()
            .filter(|(_, &f)| f == fingerprint)
        {
            let at = from + offset;
            // Computed once, and only for a name whose fingerprint is listed.
            let check = *check.get_or_insert_with(|| self.check(name));
            if self.checks.get(at) == Some(&check) {
                return self.slots.get(at).copied();
            }
        }
        None
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
        // About 21 bytes per name: the entry and a share of the directory.
        let per_name = table.heap_bytes() as f64 / listed.len() as f64;
        assert!(per_name < 22.0, "{per_name} bytes per name");
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
