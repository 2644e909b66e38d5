//! Rules: YAML rule files in, one immutable compiled [`RuleSet`] out.
//!
//! [`load_dir`] / [`load_sources`] read and validate files (every error names file, line and
//! column, and all errors are reported, not only the first); [`RuleSet::compile`] builds the
//! matchers once: exact names and `*.` suffixes in one hash table ([`domains`]), regexes in
//! one `RegexSet` behind a test of their literal endings ([`regexes`]), CIDRs in a prefix
//! table ([`cidr`]). Matching never panics.
//!
//! Precedence (the contract in DESIGN.md): an `allow` rule beats every blocking rule for the
//! same flow; otherwise the most specific entry wins (exact name, then the longest suffix,
//! then a regex).

pub mod cidr;
pub mod diff;
pub mod domains;
pub mod import;
pub mod lint;
mod load;
mod regexes;
pub mod schema;

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use domains::RuleIndex;
pub use load::yaml_error;
pub use load::{
    bundled_sources, is_list_file, load_dir, load_sources, LoadedFile, RuleError, RuleErrors,
    Source, LIST_EXTENSION,
};
pub use schema::{Action, DomainPattern, RuleSpec};

use crate::wire::Protocol;
use cidr::CidrTable;
use domains::{DomainTable, NameHit};
use regexes::NameRegexes;

/// A compiled rule: what matching needs, plus what reports and `explain` show.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Arc<str>,
    pub vendor: Arc<str>,
    pub action: Action,
    pub category: Option<String>,
    pub description: String,
    pub references: Vec<String>,
    /// File the rule came from.
    pub file: Arc<str>,
    /// Empty: every port.
    pub ports: Box<[u16]>,
    /// Bit 0 TCP, bit 1 UDP; 0 means every protocol.
    protocols: u8,
    /// The opt-in service profile the rule belongs to, if any.
    pub profile: Option<Profile>,
}

/// Most service profiles one ruleset may define (they are bits of a [`Profiles`] set).
pub const MAX_PROFILES: usize = 64;

/// An opt-in service profile of the ruleset: its index and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub index: u8,
    pub name: Arc<str>,
}

/// A set of service profiles turned on (for a client group), one bit per profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Profiles(u64);

impl Profiles {
    /// No profile on: what `rules check`, `explain` and must-keep-working lists assume.
    pub const NONE: Profiles = Profiles(0);

    pub fn with(self, index: u8) -> Profiles {
        Profiles(self.0 | 1u64.checked_shl(u32::from(index)).unwrap_or(0))
    }

    pub fn union(self, other: Profiles) -> Profiles {
        Profiles(self.0 | other.0)
    }

    pub fn contains(self, index: u8) -> bool {
        self.0 & 1u64.checked_shl(u32::from(index)).unwrap_or(0) != 0
    }
}

impl Rule {
    /// Whether the rule applies with the profiles `enabled` on: a rule outside every profile
    /// always does, a profile's rule only when its profile is on.
    pub fn in_force(&self, enabled: Profiles) -> bool {
        self.profile
            .as_ref()
            .is_none_or(|p| enabled.contains(p.index))
    }

    /// Whether the rule's `ports`/`protocols` restrictions admit this flow.
    pub fn applies_to(&self, port: u16, protocol: Protocol) -> bool {
        (self.ports.is_empty() || self.ports.contains(&port)) && self.allows_protocol(protocol)
    }

    /// Whether the rule's `protocols` restriction admits `protocol`.
    pub fn allows_protocol(&self, protocol: Protocol) -> bool {
        self.protocols == 0
            || match protocol {
                Protocol::Tcp => self.protocols & 1 != 0,
                Protocol::Udp => self.protocols & 2 != 0,
                Protocol::Other(_) => false,
            }
    }

    /// "tcp/443" style summary of the restrictions, empty when there are none.
    pub fn restrictions(&self) -> String {
        let mut parts = Vec::new();
        if self.protocols & 1 != 0 {
            parts.push("tcp".to_string());
        }
        if self.protocols & 2 != 0 {
            parts.push("udp".to_string());
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            parts.push(format!("port {}", ports.join(",")));
        }
        parts.join(" ")
    }
}

/// How a rule matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    /// The name is listed as is.
    Exact,
    /// The name is below a `*.suffix` entry; holds the suffix length.
    Suffix(usize),
    /// A `regex:` entry matched.
    Regex,
    /// The address is inside a CIDR entry; holds the prefix length.
    Cidr(u8),
}

impl MatchKind {
    /// Higher is more specific.
    fn specificity(self) -> usize {
        match self {
            MatchKind::Exact => 1 << 20,
            MatchKind::Suffix(len) => 1 << 10 | len,
            MatchKind::Regex => 1,
            MatchKind::Cidr(prefix) => usize::from(prefix),
        }
    }
}

/// The rule a flow matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub rule: RuleIndex,
    pub kind: MatchKind,
}

/// Sizes of a compiled ruleset, for `rules check` and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleSetStats {
    pub files: usize,
    pub rules: usize,
    pub names: usize,
    pub regexes: usize,
    pub cidrs: usize,
    /// Heap bytes held by the name table.
    pub name_table_bytes: usize,
}

/// The immutable compiled ruleset shared by all packet threads.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    names: DomainTable,
    regexes: Option<NameRegexes>,
    cidrs: CidrTable,
    /// Names of the service profiles, sorted; a rule's profile index points here.
    profiles: Vec<Arc<str>>,
    sha256: String,
    stats: RuleSetStats,
}

impl RuleSet {
    /// Compiles loaded rule files. Fails only on limits no file check can see (more than
    /// 2^31 rules, regex set over the size limit).
    pub fn compile(files: &[LoadedFile]) -> Result<Self, RuleErrors> {
        let domain_count: usize = files
            .iter()
            .flat_map(|f| &f.spec.rules)
            .map(|r| r.domains.len())
            .sum();
        let mut names = DomainTable::with_capacity(domain_count);
        let mut cidrs = CidrTable::default();
        let mut regex_patterns = Vec::new();
        let mut regex_rules = Vec::new();
        let mut rules = Vec::new();
        let profiles = profile_names(files)?;
        let mut hasher = Sha256::new();
        for file in files {
            hasher.update(file.name.as_bytes());
            hasher.update([0]);
            hasher.update(file.text.as_bytes());
            hasher.update([0]);
            for list in &file.lists {
                hasher.update(list.name.as_bytes());
                hasher.update([0]);
                hasher.update(list.text.as_bytes());
                hasher.update([0]);
            }
            let vendor: Arc<str> = Arc::from(file.spec.vendor.0.as_str());
            let file_name: Arc<str> = Arc::from(file.name.as_str());
            for spec in &file.spec.rules {
                let index = RuleIndex::try_from(rules.len())
                    .ok()
                    .filter(|i| *i < 1 << 31)
                    .ok_or_else(|| RuleErrors::single(&file.name, "more than 2^31 rules"))?;
                for domain in &spec.domains {
                    match domain {
                        DomainPattern::Exact(name) => names.insert(name.as_bytes(), false, index),
                        DomainPattern::Suffix(name) => names.insert(name.as_bytes(), true, index),
                        DomainPattern::Regex(pattern) => {
                            regex_patterns.push(pattern.clone());
                            regex_rules.push(index);
                        }
                    }
                }
                for cidr in &spec.cidrs {
                    cidrs.insert(cidr.0, index);
                }
                rules.push(compile_rule(spec, &vendor, &file_name, &profiles));
            }
        }
        names.shrink_to_fit();
        let regexes = if regex_patterns.is_empty() {
            None
        } else {
            let set = NameRegexes::new(&regex_patterns, regex_rules)
                .map_err(|e| RuleErrors::single("rules", &format!("regex set: {e}")))?;
            Some(set)
        };
        let stats = RuleSetStats {
            files: files.len(),
            rules: rules.len(),
            names: names.len(),
            regexes: regexes.as_ref().map_or(0, NameRegexes::len),
            cidrs: cidrs.len(),
            name_table_bytes: names.heap_bytes(),
        };
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            rules,
            names,
            regexes,
            cidrs,
            profiles,
            sha256,
            stats,
        })
    }

    /// The service profiles the rules define, sorted by name.
    pub fn profiles(&self) -> &[Arc<str>] {
        &self.profiles
    }

    /// The profile called `name`, if the rules define it.
    pub fn profile(&self, name: &str) -> Option<Profile> {
        let index = self.profiles.iter().position(|p| &**p == name)?;
        Some(Profile {
            index: u8::try_from(index).ok()?,
            name: Arc::clone(self.profiles.get(index)?),
        })
    }

    /// An empty ruleset: matches nothing.
    pub fn empty() -> Self {
        Self::compile(&[]).unwrap_or_else(|_| Self {
            rules: Vec::new(),
            names: DomainTable::default(),
            regexes: None,
            cidrs: CidrTable::default(),
            profiles: Vec::new(),
            sha256: String::new(),
            stats: RuleSetStats::default(),
        })
    }

    pub fn rule(&self, index: RuleIndex) -> Option<&Rule> {
        self.rules.get(index as usize)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// SHA-256 over the file names and contents, in load order (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Short version string shown in reports: the first 12 hex digits of the SHA-256.
    pub fn version(&self) -> &str {
        self.sha256.get(..12).unwrap_or(&self.sha256)
    }

    pub fn stats(&self) -> RuleSetStats {
        self.stats
    }

    /// The rule for a flow whose name is `name` (normalised), with the flow's server port and
    /// protocol, no service profile on. Allow beats blocking; otherwise the most specific
    /// entry wins.
    pub fn match_name(&self, name: &[u8], port: u16, protocol: Protocol) -> Option<Hit> {
        self.match_name_with(name, port, protocol, Profiles::NONE)
    }

    /// [`RuleSet::match_name`] for a client with the service profiles `enabled` on: the
    /// rules of other profiles do not apply.
    pub fn match_name_with(
        &self,
        name: &[u8],
        port: u16,
        protocol: Protocol,
        enabled: Profiles,
    ) -> Option<Hit> {
        let mut best = Best::default();
        self.for_each_name_hit(name, |hit| {
            self.consider(&mut best, hit, port, protocol, enabled)
        });
        best.resolve()
    }

    /// The rule for a flow to `addr` from the CIDR entries, no service profile on.
    pub fn match_addr(&self, addr: IpAddr, port: u16, protocol: Protocol) -> Option<Hit> {
        self.match_addr_with(addr, port, protocol, Profiles::NONE)
    }

    /// [`RuleSet::match_addr`] for a client with the service profiles `enabled` on.
    pub fn match_addr_with(
        &self,
        addr: IpAddr,
        port: u16,
        protocol: Protocol,
        enabled: Profiles,
    ) -> Option<Hit> {
        let mut best = Best::default();
        self.cidrs.for_each_match(addr, |rule, prefix| {
            let hit = Hit {
                rule,
                kind: MatchKind::Cidr(prefix),
            };
            self.consider(&mut best, hit, port, protocol, enabled);
        });
        best.resolve()
    }

    /// The blocking rule, if any, that a client of no group would meet for `name` on one of
    /// the usual ways a name is used (TCP 443, UDP 443, TCP 80, DNS), with that way:
    /// what a must-keep-working name is checked against.
    pub fn blocks_name(&self, name: &[u8]) -> Option<(&Rule, &'static str)> {
        self.blockers_of_name(name).into_iter().next()
    }

    /// Every (blocking rule, way) of [`RuleSet::blocks_name`], one per way it is blocked.
    pub fn blockers_of_name(&self, name: &[u8]) -> Vec<(&Rule, &'static str)> {
        const PROBES: [(u16, Protocol, &str); 4] = [
            (443, Protocol::Tcp, "tcp/443"),
            (443, Protocol::Udp, "udp/443"),
            (80, Protocol::Tcp, "tcp/80"),
            (53, Protocol::Udp, "dns"),
        ];
        PROBES
            .iter()
            .filter_map(|&(port, protocol, shown)| {
                self.match_name(name, port, protocol)
                    .and_then(|hit| self.rule(hit.rule))
                    .filter(|rule| rule.action.blocks())
                    .map(|rule| (rule, shown))
            })
            .collect()
    }

    /// Every entry that matches `name`, ignoring port and protocol restrictions, most
    /// specific first: what `rules explain` shows.
    pub fn explain_name(&self, name: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.for_each_name_hit(name, |hit| hits.push(hit));
        hits.sort_by_key(|h| std::cmp::Reverse(h.kind.specificity()));
        hits
    }

    /// Calls `visit` for every name entry (exact, suffix, regex) that matches `name`.
    fn for_each_name_hit(&self, name: &[u8], mut visit: impl FnMut(Hit)) {
        self.names.for_each_match(name, |rule, hit| {
            let kind = match hit {
                NameHit::Exact => MatchKind::Exact,
                NameHit::Suffix(len) => MatchKind::Suffix(len),
            };
            visit(Hit { rule, kind });
        });
        if let Some(regexes) = &self.regexes {
            regexes.for_each_match(name, |rule| {
                visit(Hit {
                    rule,
                    kind: MatchKind::Regex,
                })
            });
        }
    }

    /// Every CIDR entry that contains `addr`, longest prefix first.
    pub fn explain_addr(&self, addr: IpAddr) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.cidrs.for_each_match(addr, |rule, prefix| {
            hits.push(Hit {
                rule,
                kind: MatchKind::Cidr(prefix),
            })
        });
        hits
    }

    /// Entries that look related to `name` but do not match it, with why: a `*.name` entry
    /// (which does not cover `name` itself) and exact entries of parent names (which do not
    /// cover names below them).
    pub fn near_misses(&self, name: &[u8]) -> Vec<(RuleIndex, String)> {
        let text = String::from_utf8_lossy(name);
        let mut misses = Vec::new();
        let (_, suffix_rules) = self.names.listed(name);
        for rule in suffix_rules {
            misses.push((
                rule,
                format!("*.{text} is listed, but a '*.' entry matches only names below {text}, not {text} itself"),
            ));
        }
        let mut rest = name;
        while let Some(dot) = rest.iter().position(|&b| b == b'.') {
            rest = rest.get(dot + 1..).unwrap_or(&[]);
            let parent = String::from_utf8_lossy(rest);
            let (exact_rules, _) = self.names.listed(rest);
            for rule in exact_rules {
                misses.push((
                    rule,
                    format!("{parent} is listed as an exact name, which does not cover {text}; *.{parent} would"),
                ));
            }
        }
        misses
    }

    /// Which of `hits` wins under the precedence rules (ignoring port/protocol), with the
    /// service profiles `enabled` on.
    pub fn resolve(&self, hits: &[Hit], enabled: Profiles) -> Option<Hit> {
        let mut best = Best::default();
        for hit in hits {
            if let Some(rule) = self.rule(hit.rule) {
                if rule.in_force(enabled) {
                    best.offer(*hit, rule.action);
                }
            }
        }
        best.resolve()
    }

    fn consider(&self, best: &mut Best, hit: Hit, port: u16, protocol: Protocol, on: Profiles) {
        if let Some(compiled) = self.rules.get(hit.rule as usize) {
            if compiled.applies_to(port, protocol) && compiled.in_force(on) {
                best.offer(hit, compiled.action);
            }
        }
    }
}

/// Keeps the most specific allow hit and the most specific other hit. Between equally
/// specific entries a blocking rule beats a `log` rule (a site file tightens a vendor's
/// logged host by listing it again), then the rule loaded first wins.
#[derive(Default)]
struct Best {
    allow: Option<(Hit, Action)>,
    other: Option<(Hit, Action)>,
}

impl Best {
    fn offer(&mut self, hit: Hit, action: Action) {
        let slot = if action == Action::Allow {
            &mut self.allow
        } else {
            &mut self.other
        };
        let rank = |hit: &Hit, action: Action| {
            (
                hit.kind.specificity(),
                action.blocks(),
                std::cmp::Reverse(hit.rule),
            )
        };
        let better = match slot {
            None => true,
            Some((current, current_action)) => rank(&hit, action) > rank(current, *current_action),
        };
        if better {
            *slot = Some((hit, action));
        }
    }

    fn resolve(self) -> Option<Hit> {
        self.allow.or(self.other).map(|(hit, _)| hit)
    }
}

/// The distinct profile names of every rule, sorted; at most [`MAX_PROFILES`].
fn profile_names(files: &[LoadedFile]) -> Result<Vec<Arc<str>>, RuleErrors> {
    let names: std::collections::BTreeSet<&str> = files
        .iter()
        .flat_map(|f| &f.spec.rules)
        .filter_map(|r| r.profile.as_ref().map(|p| p.0.as_str()))
        .collect();
    if names.len() > MAX_PROFILES {
        return Err(RuleErrors::single(
            "rules",
            &format!(
                "{} service profiles defined; at most {MAX_PROFILES} are supported",
                names.len()
            ),
        ));
    }
    Ok(names.into_iter().map(Arc::from).collect())
}

fn compile_rule(
    spec: &RuleSpec,
    vendor: &Arc<str>,
    file: &Arc<str>,
    profiles: &[Arc<str>],
) -> Rule {
    let mut protocols = 0u8;
    for protocol in &spec.protocols {
        protocols |= match protocol {
            schema::ProtocolSpec::Tcp => 1,
            schema::ProtocolSpec::Udp => 2,
        };
    }
    let mut ports = spec.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    Rule {
        id: Arc::from(spec.id.0.as_str()),
        vendor: Arc::clone(vendor),
        action: spec.action,
        category: spec.category.as_ref().map(|c| c.0.clone()),
        description: spec.description.clone(),
        references: spec.references.clone(),
        file: Arc::clone(file),
        ports: ports.into_boxed_slice(),
        protocols,
        profile: spec.profile.as_ref().and_then(|wanted| {
            let index = profiles.iter().position(|p| **p == *wanted.0)?;
            Some(Profile {
                index: u8::try_from(index).ok()?,
                name: Arc::clone(profiles.get(index)?),
            })
        }),
    }
}

/// Loads rules from `dir`, or the bundled default when `None`.
pub fn load_rules(dir: Option<&std::path::Path>) -> Result<(Vec<LoadedFile>, RuleSet), RuleErrors> {
    let files = match dir {
        Some(dir) => load_dir(dir)?,
        None => load_sources(bundled_sources())?,
    };
    let set = RuleSet::compile(&files)?;
    Ok((files, set))
}

#[cfg(test)]
mod tests;
