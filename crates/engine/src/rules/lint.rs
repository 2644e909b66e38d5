//! The rule linter behind `telestrip rules check`: what loads and compiles can still be
//! wrong. Finds duplicate entries, entries that another rule's `*.` suffix already covers,
//! allow/block conflicts, over-broad entries (a public suffix such as `*.co.uk`, from the
//! Public Suffix List via the `psl` crate, or a huge address block), regexes that are slow,
//! never match or need not be regexes, and rules without references. Every finding names the
//! file and line of the entry it is about.

use std::collections::HashSet;

/// Rule files are trusted input here, and large (a million entries): a fast hasher.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use ipnet::IpNet;
use regex_syntax::hir::{Hir, HirKind};

use super::load::{LoadedFile, RuleError};
use super::schema::{anchored_regex, Action, DomainPattern, RuleSpec};

/// How bad a finding is. What stops a ruleset (load errors, failing rule tests) is not a lint
/// finding; `--strict` turns warnings into errors, not notes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, often deliberate: a more specific entry of another rule inside a
    /// suffix with the same action only decides which rule its flows are counted under.
    Note,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub error: RuleError,
}

/// Compiled size above which a single regex counts as slow (the `regex` crate's automata
/// grow with counted repetitions and large Unicode classes).
const SLOW_REGEX_BYTES: usize = 64 * 1024;
/// Address blocks larger than this are reported as over-broad.
const WIDEST_V4_PREFIX: u8 = 8;
const WIDEST_V6_PREFIX: u8 = 16;

/// One rule, with what the checks need.
struct RuleRef<'a> {
    file: &'a LoadedFile,
    spec: &'a RuleSpec,
}

impl RuleRef<'_> {
    fn blocks(&self) -> bool {
        self.spec.action.blocks()
    }

    /// Whether this rule applies to every flow `other` applies to.
    fn admits_all_of(&self, other: &RuleRef<'_>) -> bool {
        let ports = self.spec.ports.is_empty()
            || (!other.spec.ports.is_empty()
                && other.spec.ports.iter().all(|p| self.spec.ports.contains(p)));
        let protocols = self.spec.protocols.is_empty()
            || (!other.spec.protocols.is_empty()
                && other
                    .spec
                    .protocols
                    .iter()
                    .all(|p| self.spec.protocols.contains(p)));
        ports && protocols
    }
}

/// A name entry: exact or `*.` suffix, its name, its rule.
#[derive(Clone, Copy)]
struct NameEntry<'a> {
    name: &'a str,
    suffix: bool,
    rule: u32,
}

/// Runs every check over loaded (valid) rule files.
pub fn lint(files: &[LoadedFile]) -> Vec<Finding> {
    let rules: Vec<RuleRef> = files
        .iter()
        .flat_map(|file| {
            file.spec
                .rules
                .iter()
                .map(move |spec| RuleRef { file, spec })
        })
        .collect();
    let mut findings = Findings::default();
    check_names(&rules, &mut findings);
    check_cidrs(&rules, &mut findings);
    for rule in &rules {
        check_regexes(rule, &mut findings);
        let lists_names = !rule.spec.domains.is_empty();
        if lists_names && rule.spec.tests.no_match.is_empty() {
            // A note: a site's own quick rule need not carry tests; the bundled rules must
            // (a unit test holds them to it).
            findings.push(
                rule,
                None,
                Severity::Note,
                format!(
                    "rule {} has no no_match test cases: add names it must not match (siblings \
                     and look-alikes of its entries, the vendor's hosts that must keep working)",
                    rule.spec.id.0
                ),
            );
        }
        if rule.spec.references.is_empty() {
            findings.rule(
                rule,
                format!(
                    "rule {} has no references (cite the public documents its entries rest on)",
                    rule.spec.id.0
                ),
            );
        }
    }
    findings.resolve_lines()
}

/// Findings whose line is found once all are known (one scan per file).
#[derive(Default)]
struct Findings<'a> {
    /// (file, rule id, entry or None for the rule itself, severity, message)
    pending: Vec<(&'a LoadedFile, &'a str, Option<Place>, Severity, String)>,
}

/// Where in the rule an entry finding is shown.
struct Place {
    entry: String,
    /// At the entry's last listing in the rule (a repeat), not its first.
    last: bool,
}

impl<'a> Findings<'a> {
    fn entry(&mut self, rule: &RuleRef<'a>, entry: String, message: String) {
        self.entry_with(Severity::Warning, rule, entry, message);
    }

    fn entry_with(
        &mut self,
        severity: Severity,
        rule: &RuleRef<'a>,
        entry: String,
        message: String,
    ) {
        let place = Place { entry, last: false };
        self.push(rule, Some(place), severity, message);
    }

    /// A finding about an entry listed again: shown at its last listing.
    fn repeat(&mut self, rule: &RuleRef<'a>, entry: String, message: String) {
        let place = Place { entry, last: true };
        self.push(rule, Some(place), Severity::Warning, message);
    }

    fn push(
        &mut self,
        rule: &RuleRef<'a>,
        place: Option<Place>,
        severity: Severity,
        message: String,
    ) {
        let id = rule.spec.id.0.as_str();
        self.pending.push((rule.file, id, place, severity, message));
    }

    fn rule(&mut self, rule: &RuleRef<'a>, message: String) {
        self.push(rule, None, Severity::Warning, message);
    }

    fn resolve_lines(self) -> Vec<Finding> {
        // Only the rules and entries with findings are looked up in each file's text.
        let mut wanted: HashMap<&str, HashSet<(&str, &str)>> = HashMap::default();
        for (file, id, place, _, _) in &self.pending {
            let keys = wanted.entry(file.name.as_str()).or_default();
            if let Some(place) = place {
                for written in written_forms(&place.entry) {
                    keys.insert((id, written));
                }
            }
        }
        let mut indexes: HashMap<&str, EntryLines> = HashMap::default();
        let mut findings: Vec<Finding> = self
            .pending
            .iter()
            .map(|(file, id, place, severity, message)| {
                let lines = indexes.entry(file.name.as_str()).or_insert_with(|| {
                    EntryLines::scan(&file.text, wanted.get(file.name.as_str()))
                });
                let line = place
                    .as_ref()
                    .and_then(|p| lines.entry(id, p))
                    .or_else(|| lines.rules.get(id).copied());
                Finding {
                    severity: *severity,
                    error: RuleError {
                        file: file.name.clone(),
                        line,
                        column: None,
                        message: message.clone(),
                    },
                }
            })
            .collect();
        findings.sort_by(|a, b| {
            (a.error.file.as_str(), a.error.line).cmp(&(b.error.file.as_str(), b.error.line))
        });
        findings
    }
}

/// The ways an entry may be written in a file: as shown, and an address without its /32 or
/// /128.
fn written_forms(entry: &str) -> [&str; 2] {
    let bare = entry
        .strip_suffix("/32")
        .or_else(|| entry.strip_suffix("/128"))
        .unwrap_or(entry);
    [entry, bare]
}

/// Lines of rules and entries in a rule file's text, found by a scan of the YAML as written
/// (block lists `- entry` and flow lists `[a, b]` under `domains:` and `cidrs:`).
struct EntryLines<'a> {
    rules: HashMap<&'a str, usize>,
    /// Every line an entry is listed on, in order.
    entries: HashMap<(&'a str, String), Vec<usize>>,
}

impl<'a> EntryLines<'a> {
    /// Scans `text`, keeping the lines of the `wanted` (rule, entry) pairs only.
    fn scan(text: &'a str, wanted: Option<&HashSet<(&str, &str)>>) -> Self {
        let mut rules = HashMap::default();
        let mut entries: HashMap<(&'a str, String), Vec<usize>> = HashMap::default();
        let keep = |entries: &mut HashMap<(&'a str, String), Vec<usize>>,
                    rule: &'a str,
                    item: &str,
                    number: usize| {
            let value = unquote(item);
            if wanted.is_some_and(|w| w.contains(&(rule, value.as_str()))) {
                entries.entry((rule, value)).or_default().push(number);
            }
        };
        let mut rule = "";
        let mut in_entries = false;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.split(" #").next().unwrap_or("").trim();
            let line_after_dash = line.strip_prefix("- ").unwrap_or(line).trim_start();
            if let Some(id) = line_after_dash.strip_prefix("id:") {
                rule = id.trim();
                rules.entry(rule).or_insert(number);
                in_entries = false;
                continue;
            }
            if let Some(item) = line.strip_prefix("- ").filter(|_| in_entries) {
                keep(&mut entries, rule, item, number);
                continue;
            }
            if let Some((key, value)) = line.split_once(':').filter(|(k, _)| !k.contains(' ')) {
                in_entries = matches!(key, "domains" | "cidrs");
                let value = value.trim();
                if in_entries && value.starts_with('[') {
                    let items = value.trim_start_matches('[').trim_end_matches(']');
                    for item in items.split(',').filter(|i| !i.trim().is_empty()) {
                        keep(&mut entries, rule, item, number);
                    }
                }
            }
        }
        Self { rules, entries }
    }
}

impl EntryLines<'_> {
    /// The line of an entry finding: the entry's first listing, or its last for a repeat.
    fn entry(&self, rule: &str, place: &Place) -> Option<usize> {
        let lines = written_forms(&place.entry)
            .into_iter()
            .find_map(|written| self.entries.get(&(rule, written.to_string())))?;
        if place.last {
            lines.last().copied()
        } else {
            lines.first().copied()
        }
    }
}

/// A YAML scalar as written in a list: plain, or quoted (escapes only through the YAML
/// parser, which is slower).
fn unquote(item: &str) -> String {
    let item = item.trim();
    if item.contains('\\') && (item.starts_with('"') || item.starts_with('\'')) {
        if let Ok(text) = serde_yaml::from_str::<String>(item) {
            return text;
        }
    }
    item.trim_matches('"').trim_matches('\'').to_string()
}

fn entry_text(name: &str, suffix: bool) -> String {
    if suffix {
        format!("*.{name}")
    } else {
        name.to_string()
    }
}

fn place(rule: &RuleRef<'_>) -> String {
    let line = rule.file.line_of(&format!("id: {}", rule.spec.id.0));
    match line {
        Some(line) => format!("{}:{line}", rule.file.name),
        None => rule.file.name.clone(),
    }
}

fn check_names<'a>(rules: &[RuleRef<'a>], findings: &mut Findings<'a>) {
    let mut entries: Vec<NameEntry> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        for domain in &rule.spec.domains {
            let (name, suffix) = match domain {
                DomainPattern::Exact(name) => (name.as_str(), false),
                DomainPattern::Suffix(name) => (name.as_str(), true),
                DomainPattern::Regex(_) => continue,
            };
            let rule_index = u32::try_from(index).unwrap_or(u32::MAX);
            entries.push(NameEntry {
                name,
                suffix,
                rule: rule_index,
            });
            if suffix {
                check_public_suffix(rule, name, findings);
            }
        }
    }
    // Sorted, equal entries sit together and the suffix entries of a name can be found.
    entries.sort_by(|a, b| (a.name, a.suffix, a.rule).cmp(&(b.name, b.suffix, b.rule)));
    let mut suffixes: HashMap<&str, (usize, usize)> = HashMap::default();
    let mut start = 0;
    while start < entries.len() {
        let Some(first) = entries.get(start).copied() else {
            break;
        };
        let end = start
            + entries
                .get(start..)
                .unwrap_or(&[])
                .iter()
                .take_while(|e| e.name == first.name && e.suffix == first.suffix)
                .count();
        if first.suffix {
            suffixes.insert(first.name, (start, end));
        }
        // The same entry more than once: every copy after the first.
        let group = entries.get(start..end).unwrap_or(&[]);
        if let Some(original) = group.first() {
            for copy in group.iter().skip(1) {
                let text = entry_text(copy.name, copy.suffix);
                same_listing(rules, original.rule, copy.rule, text, findings);
            }
        }
        start = end;
    }
    // Entries below a suffix entry of the same or another rule: the nearest one is reported
    // (the wider ones are reported against it in turn).
    for entry in &entries {
        let mut rest = entry.name;
        while let Some((_, parent)) = rest.split_once('.') {
            rest = parent;
            let Some(&(from, to)) = suffixes.get(parent) else {
                continue;
            };
            let cover_text = entry_text(parent, true);
            for covering in entries.get(from..to).unwrap_or(&[]) {
                let text = entry_text(entry.name, entry.suffix);
                covered(
                    rules,
                    entry.rule,
                    covering.rule,
                    text,
                    &cover_text,
                    findings,
                );
            }
            break;
        }
    }
}

fn rule_at<'r, 'a>(rules: &'r [RuleRef<'a>], index: u32) -> Option<&'r RuleRef<'a>> {
    rules.get(index as usize)
}

/// Rule `copy` lists the entry `text` that rule `original` (loaded first, so it wins ties)
/// lists too: names and CIDRs alike.
fn same_listing<'a>(
    rules: &[RuleRef<'a>],
    original: u32,
    copy: u32,
    text: String,
    findings: &mut Findings<'a>,
) {
    let (Some(first), Some(second)) = (rule_at(rules, original), rule_at(rules, copy)) else {
        return;
    };
    let message = if original == copy {
        let message = format!("{text} is listed twice in rule {}", second.spec.id.0);
        findings.repeat(second, text, message);
        return;
    } else if first.spec.action == second.spec.action {
        format!(
            "{text} is also listed by rule {} at {}; remove one",
            first.spec.id.0,
            place(first)
        )
    } else if first.spec.profile.is_some() || second.spec.profile.is_some() {
        // A service profile re-opens what a blocking rule lists, for its groups only.
        return;
    } else if first.spec.action == Action::Allow || second.spec.action == Action::Allow {
        // Shown at the blocking entry: that is the one that never takes effect.
        let block = if first.blocks() { first } else { second };
        if block.blocks() {
            findings.entry(block, text.clone(), conflict(&text, first, second));
            return;
        }
        same_listing_other_action(&text, first, second)
    } else if first.blocks() != second.blocks() {
        // Blocking beats log on the same entry. Across files that is a site tightening a
        // vendor's logged host; within one file, a slip.
        let block = if first.blocks() { first } else { second };
        let message = format!(
            "{text} is {} in rule {} at {} and {} here; on the same entry the blocking rule {} takes effect",
            first.spec.action,
            first.spec.id.0,
            place(first),
            second.spec.action,
            block.spec.id.0
        );
        let severity = if std::ptr::eq(first.file, second.file) {
            Severity::Warning
        } else {
            Severity::Note
        };
        findings.entry_with(severity, second, text, message);
        return;
    } else {
        same_listing_other_action(&text, first, second)
    };
    findings.entry(second, text, message);
}

fn same_listing_other_action(text: &str, first: &RuleRef<'_>, second: &RuleRef<'_>) -> String {
    format!(
        "{text} is {} in rule {} at {} and {} here; only the rule loaded first takes effect",
        first.spec.action,
        first.spec.id.0,
        place(first),
        second.spec.action
    )
}

/// An allow and a blocking rule list the same entry: the allow rule wins.
fn conflict(text: &str, a: &RuleRef<'_>, b: &RuleRef<'_>) -> String {
    let (allow, block) = if a.spec.action == Action::Allow {
        (a, b)
    } else {
        (b, a)
    };
    format!(
        "allow/block conflict: {text} is blocked by rule {} ({}) and allowed by rule {} at {}; the allow rule wins, so the block never takes effect",
        block.spec.id.0,
        block.spec.action,
        allow.spec.id.0,
        place(allow)
    )
}

/// Entry `text` of rule `entry_rule` lies inside `cover_text` (a `*.` suffix or a wider
/// prefix) of rule `cover_rule`.
fn covered<'a>(
    rules: &[RuleRef<'a>],
    entry_rule: u32,
    cover_rule: u32,
    text: String,
    cover_text: &str,
    findings: &mut Findings<'a>,
) {
    let (Some(rule), Some(cover)) = (rule_at(rules, entry_rule), rule_at(rules, cover_rule)) else {
        return;
    };
    if rule.blocks() && cover.spec.action == Action::Allow && cover.spec.profile.is_none() {
        let message = format!(
            "allow/block conflict: {text} of rule {} is inside {cover_text} of allow rule {} at {}; the allow rule wins, so {text} is never blocked",
            rule.spec.id.0,
            cover.spec.id.0,
            place(cover)
        );
        findings.entry(rule, text, message);
    } else if rule.spec.action == cover.spec.action && cover.admits_all_of(rule) {
        if entry_rule == cover_rule {
            let message =
                format!("{text} is already covered by {cover_text} of the same rule; remove it");
            findings.entry(rule, text, message);
        } else {
            let message = format!(
                "{text} is inside {cover_text} of rule {} at {} with the same action; it only decides that its flows count under rule {} (remove it if that is not meant)",
                cover.spec.id.0,
                place(cover),
                rule.spec.id.0
            );
            findings.entry_with(Severity::Note, rule, text, message);
        }
    }
}

fn check_public_suffix<'a>(rule: &RuleRef<'a>, name: &str, findings: &mut Findings<'a>) {
    let is_public = psl::suffix(name.as_bytes())
        .is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes());
    if is_public {
        findings.entry(
            rule,
            format!("*.{name}"),
            format!(
                "*.{name} is over-broad: {name} is a public suffix, so this covers every site registered under it"
            ),
        );
    }
}

fn check_cidrs<'a>(rules: &[RuleRef<'a>], findings: &mut Findings<'a>) {
    let mut by_net: HashMap<IpNet, u32> = HashMap::default();
    for (index, rule) in rules.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        for cidr in &rule.spec.cidrs {
            let net = cidr.0;
            let widest = match net {
                IpNet::V4(_) => WIDEST_V4_PREFIX,
                IpNet::V6(_) => WIDEST_V6_PREFIX,
            };
            if net.prefix_len() < widest {
                findings.entry(
                    rule,
                    net.to_string(),
                    format!("{net} is over-broad: it covers more than a /{widest}"),
                );
            }
            if let Some(&first) = by_net.get(&net) {
                same_listing(rules, first, index, net.to_string(), findings);
            } else {
                by_net.insert(net, index);
            }
        }
    }
    // Prefixes inside a shorter prefix of the same or another rule.
    for (index, rule) in rules.iter().enumerate() {
        for cidr in &rule.spec.cidrs {
            let net = cidr.0;
            for prefix in (0..net.prefix_len()).rev() {
                let Ok(wider) = IpNet::new(net.addr(), prefix).map(|n| n.trunc()) else {
                    continue;
                };
                let Some(&covering) = by_net.get(&wider) else {
                    continue;
                };
                let rule_index = u32::try_from(index).unwrap_or(u32::MAX);
                let text = net.to_string();
                covered(
                    rules,
                    rule_index,
                    covering,
                    text,
                    &wider.to_string(),
                    findings,
                );
                break;
            }
        }
    }
}

fn check_regexes<'a>(rule: &RuleRef<'a>, findings: &mut Findings<'a>) {
    for domain in &rule.spec.domains {
        let DomainPattern::Regex(pattern) = domain else {
            continue;
        };
        let text = domain.to_string();
        let anchored = anchored_regex(pattern);
        let Ok(hir) = regex_syntax::Parser::new().parse(&anchored) else {
            continue;
        };
        if let Some(byte) = required_impossible_byte(&hir, true) {
            findings.entry(
                rule,
                text.clone(),
                format!(
                    "{text} never matches: it requires {:?}, which a name compared by rules never contains (names are lowercase letters, digits, '-', '_' and '.')",
                    char::from(byte)
                ),
            );
            continue;
        }
        if hir.properties().minimum_len().unwrap_or(0) > crate::inspect::name::MAX_NAME_LEN {
            findings.entry(
                rule,
                text.clone(),
                format!("{text} never matches: it needs more than 253 characters"),
            );
            continue;
        }
        if let Some(literal) = literal_name(&hir) {
            findings.entry(
                rule,
                text.clone(),
                format!("{text} matches only {literal}: write it as an exact entry (exact names are checked first and faster)"),
            );
        }
        let too_big = regex::RegexBuilder::new(&anchored)
            .size_limit(SLOW_REGEX_BYTES)
            .build()
            .is_err();
        if too_big {
            findings.entry(
                rule,
                text.clone(),
                format!("{text} is slow: it compiles to more than {} KiB (counted repetitions, large classes); use suffix entries or a simpler pattern", SLOW_REGEX_BYTES / 1024),
            );
        }
        let tests = &rule.spec.tests.should_match;
        if tests.is_empty() {
            findings.entry(
                rule,
                text.clone(),
                format!("{text} has no match test: add one to the rule's tests, so a regex that never matches is noticed"),
            );
        } else if let Ok(regex) = regex::Regex::new(&anchored) {
            let lowered: Vec<String> = tests.iter().map(|t| t.to_ascii_lowercase()).collect();
            if !lowered
                .iter()
                .any(|t| regex.is_match(t.trim_end_matches('.')))
            {
                findings.entry(
                    rule,
                    text.clone(),
                    format!("{text} matches none of the rule's match tests"),
                );
            }
        }
    }
}

/// A literal byte that every match must contain and that no normalised name holds.
fn required_impossible_byte(hir: &Hir, required: bool) -> Option<u8> {
    match hir.kind() {
        HirKind::Literal(literal) if required => literal
            .0
            .iter()
            .copied()
            .find(|&b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.*".contains(&b))),
        HirKind::Concat(parts) => parts
            .iter()
            .find_map(|p| required_impossible_byte(p, required)),
        HirKind::Capture(capture) => required_impossible_byte(&capture.sub, required),
        HirKind::Repetition(repetition) if repetition.min > 0 => {
            required_impossible_byte(&repetition.sub, required)
        }
        _ => None,
    }
}

/// The one name a regex can match, when it is a plain literal (`^(?:a\.example)$`).
fn literal_name(hir: &Hir) -> Option<String> {
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let mut rest = parts
        .iter()
        .filter(|p| !matches!(p.kind(), HirKind::Look(_)));
    let (Some(only), None) = (rest.next(), rest.next()) else {
        return None;
    };
    let only = match only.kind() {
        HirKind::Capture(c) => &*c.sub,
        _ => only,
    };
    match only.kind() {
        HirKind::Literal(bytes) => String::from_utf8(bytes.0.to_vec()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
