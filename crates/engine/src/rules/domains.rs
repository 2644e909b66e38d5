//! The compiled name table: exact names and `*.` suffixes of every rule in one hash table.
//!
//! All names live in one byte arena; the table holds 4-byte entry indices, hashed by the name
//! bytes. A lookup hashes the full name (exact entries) and then each parent suffix (suffix
//! entries), so a name with n labels costs n probes whatever the size of the table. About
//! 40-50 bytes per domain at 1,000,000 domains (see `benches/`).

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

/// Index of a rule in its [`super::RuleSet`].
pub type RuleIndex = u32;

/// No rule in this slot.
const NONE: u32 = u32::MAX;
/// High bit: the slot holds an index into `spill` (several rules share the name).
const SPILL: u32 = 1 << 31;

/// Fixed seed: the table is rebuilt per ruleset and never exposed, so a per-process random
/// seed would only make benchmarks noisier; names come from the rule files, not the wire.
const SEED: u64 = 0x7465_6c65_7374_7269;

#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: u32,
    len: u8,
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

#[derive(Default)]
pub struct DomainTable {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    index: HashTable<u32>,
    spill: Vec<Box<[RuleIndex]>>,
    hasher: FixedState,
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
            arena: Vec::with_capacity(names * 24),
            entries: Vec::with_capacity(names),
            index: HashTable::with_capacity(names),
            spill: Vec::new(),
            hasher: FixedState::with_seed(SEED),
        }
    }

    /// Adds `name` (normalised, at most 253 bytes) for `rule`, as exact or suffix entry.
    pub fn insert(&mut self, name: &[u8], suffix: bool, rule: RuleIndex) {
        let hash = self.hasher.hash_one(name);
        let found = {
            let (arena, entries) = (&self.arena, &self.entries);
            self.index
                .find(hash, |&i| entry_name(arena, entries, i) == name)
                .copied()
        };
        let entry_index = match found {
            Some(index) => index,
            None => {
                let index = self.entries.len() as u32;
                self.entries.push(Entry {
                    offset: self.arena.len() as u32,
                    len: name.len().min(255) as u8,
                    exact: NONE,
                    suffix: NONE,
                });
                self.arena.extend_from_slice(name);
                let (arena, entries, hasher) = (&self.arena, &self.entries, &self.hasher);
                self.index.insert_unique(hash, index, |&i| {
                    hasher.hash_one(entry_name(arena, entries, i))
                });
                index
            }
        };
        let Some(entry) = self.entries.get_mut(entry_index as usize) else {
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

    /// Releases spare capacity after building.
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.entries.shrink_to_fit();
        let (arena, entries, hasher) = (&self.arena, &self.entries, &self.hasher);
        self.index
            .shrink_to_fit(|&i| hasher.hash_one(entry_name(arena, entries, i)));
    }

    /// Heap bytes held (arena, entries, index and its control bytes, spill lists).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self
                .spill
                .iter()
                .map(|s| s.len() * std::mem::size_of::<RuleIndex>() + 16)
                .sum::<usize>()
    }

    /// Calls `visit` for every rule whose entry matches `name` (normalised).
    pub fn for_each_match(&self, name: &[u8], mut visit: impl FnMut(RuleIndex, NameHit)) {
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
        let hash = self.hasher.hash_one(name);
        let index = self
            .index
            .find(hash, |&i| entry_name(&self.arena, &self.entries, i) == name)?;
        self.entries.get(*index as usize)
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

fn entry_name<'t>(arena: &'t [u8], entries: &[Entry], index: u32) -> &'t [u8] {
    entries
        .get(index as usize)
        .and_then(|e| arena.get(e.offset as usize..e.offset as usize + usize::from(e.len)))
        .unwrap_or(&[])
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

    fn matches(table: &DomainTable, name: &str) -> Vec<(RuleIndex, NameHit)> {
        let mut hits = Vec::new();
        table.for_each_match(name.as_bytes(), |r, h| hits.push((r, h)));
        hits
    }

    #[test]
    fn exact_entry_matches_only_that_name() {
        let mut table = DomainTable::with_capacity(4);
        table.insert(b"host.example", false, 7);
        assert_eq!(matches(&table, "host.example"), vec![(7, NameHit::Exact)]);
        assert!(matches(&table, "a.host.example").is_empty());
        assert!(matches(&table, "example").is_empty());
    }

    #[test]
    fn suffix_entry_matches_names_below_but_not_itself() {
        let mut table = DomainTable::with_capacity(4);
        table.insert(b"example", true, 1);
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
        let mut table = DomainTable::with_capacity(4);
        table.insert(b"x.example", false, 1);
        table.insert(b"x.example", false, 2);
        table.insert(b"x.example", false, 3);
        table.insert(b"x.example", true, 4);
        let hits = matches(&table, "x.example");
        assert_eq!(hits.len(), 3);
        assert_eq!(
            matches(&table, "y.x.example"),
            vec![(4, NameHit::Suffix(9))]
        );
        assert_eq!(table.len(), 1);
    }
}
