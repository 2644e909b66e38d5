//! `telestrip rules import`: turns third-party blocklists (hosts files, AdBlock-style lists,
//! plain domain lists, dnsmasq `address=` lines, address and CIDR lists) into a rule file.
//!
//! Each input file becomes one rule (plus an `allow` rule for AdBlock `@@` exceptions) whose
//! `source:` records where and when the entries came from. Nothing is dropped silently: every
//! line that is not imported is reported with its line number and the reason, counted per
//! reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};

use super::schema::{Action, DomainPattern};
use crate::inspect::Name;

/// Lists are large (a million lines) and the importer's own input: a fast hasher.
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// The list formats the importer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// `0.0.0.0 name [name...]` (also 127.0.0.1, ::, ::1 as the sink address).
    Hosts,
    /// `||name^` with optional `$modifiers`, `@@||name^` exceptions, `!` comments.
    Adblock,
    /// One name per line; `*.name` for every name below `name`.
    Domains,
    /// dnsmasq `address=/name/.../0.0.0.0` (or `/#`, or nothing): the names and every name below.
    Dnsmasq,
    /// One address, CIDR prefix or `first-last` range per line.
    Cidr,
}

impl ListFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ListFormat::Hosts => "hosts",
            ListFormat::Adblock => "adblock",
            ListFormat::Domains => "domains",
            ListFormat::Dnsmasq => "dnsmasq",
            ListFormat::Cidr => "cidr",
        }
    }

    /// Guesses the format from the first lines that are not comments.
    pub fn detect(text: &str) -> ListFormat {
        let mut votes = [0usize; 5];
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
            .take(200);
        for line in lines {
            let format = if line.starts_with("||") || line.starts_with("@@") {
                ListFormat::Adblock
            } else if line.starts_with("address=/") || line.starts_with("server=/") {
                ListFormat::Dnsmasq
            } else if line
                .split_whitespace()
                .nth(1)
                .is_some_and(|_| first_word(line).parse::<IpAddr>().is_ok())
            {
                ListFormat::Hosts
            } else if parse_cidr_line(line).is_ok() {
                ListFormat::Cidr
            } else {
                ListFormat::Domains
            };
            if let Some(v) = votes.get_mut(format as usize) {
                *v += 1;
            }
        }
        let formats = [
            ListFormat::Hosts,
            ListFormat::Adblock,
            ListFormat::Domains,
            ListFormat::Dnsmasq,
            ListFormat::Cidr,
        ];
        let best = (0..votes.len()).max_by_key(|&i| (votes.get(i).copied(), usize::MAX - i));
        best.and_then(|i| formats.get(i).copied())
            .unwrap_or(ListFormat::Domains)
    }
}

/// What to write around the imported entries.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub format: ListFormat,
    pub rule_id: String,
    pub action: Action,
    pub category: String,
    /// The list's address (or path) as recorded in `source.url` and `references`.
    pub source: String,
    /// YYYY-MM-DD.
    pub date: String,
    /// For `domains` and `hosts`: also block every name below each listed name.
    pub subdomains: bool,
}

/// One line that was not imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

/// The result of reading one list.
#[derive(Clone, Debug, Default)]
pub struct ImportedList {
    /// Blocking entries, in list order, without duplicates.
    pub domains: Vec<DomainPattern>,
    pub cidrs: Vec<IpNet>,
    /// AdBlock exceptions (`@@`, `$denyallow`): become an `allow` rule.
    pub exceptions: Vec<DomainPattern>,
    pub skipped: Vec<Skipped>,
    /// Lines that were blank or comments.
    pub comments: usize,
    /// Entries listed more than once (kept once).
    pub duplicates: usize,
    /// Entries below another entry's `*.` suffix in the same list (left out: they add nothing).
    pub covered: usize,
    /// Lines imported in a corrected form (a prefix with host bits set: its network).
    pub adjusted: Vec<Skipped>,
    pub lines: usize,
}

impl ImportedList {
    /// Skipped lines counted per reason, most frequent first.
    pub fn skipped_by_reason(&self) -> Vec<(&'static str, usize)> {
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for skipped in &self.skipped {
            *counts.entry(skipped.reason).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|&(reason, n)| (std::cmp::Reverse(n), reason));
        counts
    }
}

/// Collects entries in order, once each.
#[derive(Default)]
struct Collector {
    list: ImportedList,
    seen: HashSet<String>,
    seen_exceptions: HashSet<String>,
    seen_cidrs: HashSet<IpNet>,
}

impl Collector {
    fn domain(&mut self, pattern: DomainPattern) {
        if self.seen.insert(pattern.to_string()) {
            self.list.domains.push(pattern);
        } else {
            self.list.duplicates += 1;
        }
    }

    fn exception(&mut self, pattern: DomainPattern) {
        if self.seen_exceptions.insert(pattern.to_string()) {
            self.list.exceptions.push(pattern);
        } else {
            self.list.duplicates += 1;
        }
    }

    fn cidr(&mut self, net: IpNet) {
        if self.seen_cidrs.insert(net) {
            self.list.cidrs.push(net);
        } else {
            self.list.duplicates += 1;
        }
    }

    fn skip(&mut self, line: usize, reason: &'static str, text: &str) {
        self.list.skipped.push(Skipped {
            line,
            reason,
            text: text.chars().take(200).collect(),
        });
    }
}

/// Reads one list. Never fails: what cannot be imported is in `skipped`.
pub fn read_list(text: &str, format: ListFormat, subdomains: bool) -> ImportedList {
    let mut out = Collector::default();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        out.list.lines = number;
        let line = raw.trim();
        let is_comment = line.is_empty()
            || line.starts_with('#')
            || (format == ListFormat::Adblock && (line.starts_with('!') || line.starts_with('[')));
        if is_comment {
            out.list.comments += 1;
            continue;
        }
        match format {
            ListFormat::Hosts => hosts_line(&mut out, number, line, subdomains),
            ListFormat::Adblock => adblock_line(&mut out, number, line),
            ListFormat::Domains => domains_line(&mut out, number, strip_comment(line), subdomains),
            // dnsmasq comments start a line only; `#` is a value in `address=/#/`.
            ListFormat::Dnsmasq => dnsmasq_line(&mut out, number, line),
            ListFormat::Cidr => match parse_cidr_line(strip_comment(line)) {
                Ok(nets) => {
                    if has_host_bits(strip_comment(line)) {
                        out.list.adjusted.push(Skipped {
                            line: number,
                            reason: "a prefix with host bits set, imported as its network",
                            text: line.chars().take(200).collect(),
                        });
                    }
                    nets.into_iter().for_each(|net| out.cidr(net));
                }
                Err(reason) => out.skip(number, reason, line),
            },
        }
    }
    let mut list = out.list;
    list.covered = drop_covered(&mut list.domains) + drop_covered(&mut list.exceptions);
    list
}

/// Removes entries that a `*.` suffix entry of the same list already covers (lists that
/// block `||example.com^` often also list `ads.example.com`); returns how many.
fn drop_covered(entries: &mut Vec<DomainPattern>) -> usize {
    let suffixes: HashSet<&str> = entries
        .iter()
        .filter_map(|e| match e {
            DomainPattern::Suffix(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if suffixes.is_empty() {
        return 0;
    }
    let keep: Vec<bool> = entries
        .iter()
        .map(|entry| {
            let name = match entry {
                DomainPattern::Exact(name) | DomainPattern::Suffix(name) => name.as_str(),
                DomainPattern::Regex(_) => return true,
            };
            let mut rest = name;
            while let Some((_, parent)) = rest.split_once('.') {
                if suffixes.contains(parent) {
                    return false;
                }
                rest = parent;
            }
            true
        })
        .collect();
    let before = entries.len();
    let mut keep = keep.into_iter();
    entries.retain(|_| keep.next().unwrap_or(true));
    before - entries.len()
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

fn first_word(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

/// Names hosts files map for the machine itself, not blocklist entries.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Addresses blocklists point names at to make them unreachable.
fn is_sink(addr: IpAddr) -> bool {
    addr.is_unspecified() || addr.is_loopback()
}

fn hosts_line(out: &mut Collector, number: usize, line: &str, subdomains: bool) {
    let line = strip_comment(line);
    let mut words = line.split_whitespace();
    let Some(addr) = words.next() else { return };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        // Some "hosts" lists mix in bare names (e.g. a stray "0" line).
        return out.skip(number, "not an address followed by names", line);
    };
    let mut names = words.peekable();
    if names.peek().is_none() {
        return out.skip(number, "an address without names", line);
    }
    if !is_sink(addr) {
        return out.skip(
            number,
            "maps names to a real address (a redirect, not a block)",
            line,
        );
    }
    for name in names {
        if LOCAL_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
            out.skip(number, "a name of the local machine", name);
            continue;
        }
        add_name(out, number, name, subdomains);
    }
}

/// Adds `name` (and `*.name` when `subdomains`), or skips it with the reason.
fn add_name(out: &mut Collector, number: usize, name: &str, subdomains: bool) {
    match exact_name(name) {
        Ok(name) => {
            if subdomains {
                out.domain(DomainPattern::Suffix(name.clone()));
            }
            out.domain(DomainPattern::Exact(name));
        }
        Err(reason) => out.skip(number, reason, name),
    }
}

fn exact_name(text: &str) -> Result<String, &'static str> {
    if text.contains('*') {
        return Err("a wildcard inside a name (write a regex: entry by hand)");
    }
    if text.parse::<IpAddr>().is_ok() {
        return Err("an address where a name was expected");
    }
    match Name::from_bytes(text.as_bytes()) {
        Some(name) if !name.is_address_literal() => Ok(name.as_str().to_string()),
        Some(_) => Err("an address where a name was expected"),
        None => Err("not a valid domain name"),
    }
}

fn domains_line(out: &mut Collector, number: usize, line: &str, subdomains: bool) {
    if line.split_whitespace().nth(1).is_some() {
        return out.skip(number, "more than one word on the line", line);
    }
    match line.strip_prefix("*.") {
        Some(rest) => match exact_name(rest) {
            Ok(name) => out.domain(DomainPattern::Suffix(name)),
            Err(reason) => out.skip(number, reason, line),
        },
        None => add_name(out, number, line, subdomains),
    }
}

fn dnsmasq_line(out: &mut Collector, number: usize, line: &str) {
    let Some((key, value)) = line.split_once('=') else {
        return out.skip(number, "not a dnsmasq option=value line", line);
    };
    match key.trim() {
        "address" => {}
        "server" | "local" => {
            return out.skip(
                number,
                "server=/local= forward or answer locally, they do not block",
                line,
            )
        }
        _ => return out.skip(number, "not an address= line", line),
    }
    // address=/a.example/b.example/TARGET: the last field is the answer.
    let Some(rest) = value.trim().strip_prefix('/') else {
        return out.skip(number, "address= without /name/", line);
    };
    let mut fields: Vec<&str> = rest.split('/').collect();
    let target = fields.pop().unwrap_or("");
    let blocks = target.is_empty() || target == "#" || target.parse::<IpAddr>().is_ok_and(is_sink);
    if !blocks {
        return out.skip(
            number,
            "maps names to a real address (a redirect, not a block)",
            line,
        );
    }
    for field in fields {
        if field == "#" {
            out.skip(number, "address=/#/ matches every name", line);
            continue;
        }
        // dnsmasq: the name and every name below it.
        match exact_name(field) {
            Ok(name) => {
                out.domain(DomainPattern::Exact(name.clone()));
                out.domain(DomainPattern::Suffix(name));
            }
            Err(reason) => out.skip(number, reason, field),
        }
    }
}

/// AdBlock modifiers that only narrow a rule inside a browser (which page, which resource
/// type): a network filter cannot honour them, and importing the rule without them would block
/// more than the list means, so such lines are reported and skipped.
const BROWSER_ONLY_MODIFIERS: &[&str] = &[
    "third-party",
    "3p",
    "first-party",
    "1p",
    "~third-party",
    "domain",
    "script",
    "image",
    "stylesheet",
    "css",
    "xmlhttprequest",
    "xhr",
    "subdocument",
    "frame",
    "media",
    "font",
    "object",
    "ping",
    "websocket",
    "webrtc",
    "other",
    "popup",
    "match-case",
    "redirect",
    "removeparam",
    "csp",
    "header",
    "permissions",
    "cookie",
    "replace",
];

/// Modifiers that change nothing at the network level.
const NEUTRAL_MODIFIERS: &[&str] = &["important", "all", "document", "doc"];

fn adblock_line(out: &mut Collector, number: usize, line: &str) {
    if ["##", "#@#", "#?#", "#$#", "#%#"]
        .iter()
        .any(|m| line.contains(m))
    {
        return out.skip(number, "cosmetic (element hiding) rule", line);
    }
    let (exception, body) = match line.strip_prefix("@@") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    if body.starts_with('/') && body.len() > 1 && body.ends_with('/') {
        return out.skip(
            number,
            "regular expression rule (write a regex: entry by hand)",
            line,
        );
    }
    let (pattern, modifiers) = match body.split_once('$') {
        Some((p, m)) => (p, Some(m)),
        None => (body, None),
    };
    let mut allowed_below = Vec::new();
    let mut bad_filter = false;
    for modifier in modifiers.into_iter().flat_map(|m| m.split(',')) {
        let modifier = modifier.trim();
        let key = modifier.split('=').next().unwrap_or("").trim();
        if NEUTRAL_MODIFIERS.contains(&key) {
            continue;
        }
        if key == "badfilter" {
            bad_filter = true;
        } else if key == "denyallow" {
            allowed_below.extend(modifier.split_once('=').map_or("", |(_, v)| v).split('|'));
        } else if BROWSER_ONLY_MODIFIERS.contains(&key.trim_start_matches('~')) {
            return out.skip(
                number,
                "modifier only a browser can honour ($third-party, $domain, resource types...)",
                line,
            );
        } else {
            return out.skip(number, "modifier a network filter does not support", line);
        }
    }
    // `||name^`: the name and every name below it. `|name^` or a bare name: that name only.
    let (subdomains, rest) = match pattern.strip_prefix("||") {
        Some(rest) => (true, rest),
        None => (false, pattern.strip_prefix('|').unwrap_or(pattern)),
    };
    let name = rest.strip_suffix('|').unwrap_or(rest);
    let name = name.strip_suffix('^').unwrap_or(name);
    if name.contains('/') || name.contains(':') {
        return out.skip(
            number,
            "URL path or port (a network filter sees only names)",
            line,
        );
    }
    let name = match exact_name(name) {
        Ok(name) => name,
        Err(reason) => return out.skip(number, reason, line),
    };
    let mut patterns = vec![DomainPattern::Exact(name.clone())];
    if subdomains {
        patterns.push(DomainPattern::Suffix(name));
    }
    if bad_filter {
        // `$badfilter` cancels an earlier rule with the same pattern.
        let (seen, list) = if exception {
            (&mut out.seen_exceptions, &mut out.list.exceptions)
        } else {
            (&mut out.seen, &mut out.list.domains)
        };
        for pattern in &patterns {
            seen.remove(&pattern.to_string());
        }
        list.retain(|p| !patterns.contains(p));
        return;
    }
    for pattern in patterns {
        if exception {
            out.exception(pattern);
        } else {
            out.domain(pattern);
        }
    }
    for allowed in allowed_below {
        match exact_name(allowed) {
            Ok(name) => {
                out.exception(DomainPattern::Exact(name.clone()));
                out.exception(DomainPattern::Suffix(name));
            }
            Err(reason) => out.skip(number, reason, allowed),
        }
    }
}

fn has_host_bits(line: &str) -> bool {
    let word = line.split_whitespace().next().unwrap_or("");
    word.parse::<IpNet>().is_ok_and(|net| net.trunc() != net)
}

/// One address (a /32 or /128), prefix, or `first-last` range (as the fewest prefixes).
fn parse_cidr_line(line: &str) -> Result<Vec<IpNet>, &'static str> {
    let line = line.split_whitespace().next().unwrap_or("");
    if let Some((first, last)) = line.split_once('-') {
        let (Ok(first), Ok(last)) = (first.parse::<IpAddr>(), last.parse::<IpAddr>()) else {
            return Err("not an address, prefix or first-last range");
        };
        return match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
                Ok(Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect())
            }
            (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => {
                Ok(Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect())
            }
            _ => Err("a range whose ends differ in family or are reversed"),
        };
    }
    if let Ok(net) = line.parse::<IpNet>() {
        // Host bits set: the prefix the author evidently meant.
        return Ok(vec![net.trunc()]);
    }
    match line.parse::<IpAddr>() {
        Ok(addr) => Ok(vec![IpNet::from(addr)]),
        Err(_) => Err("not an address, prefix or first-last range"),
    }
}

/// Writes the rules of one imported list as YAML list items (under a file's `rules:`).
pub fn write_rules(list: &ImportedList, options: &ImportOptions, sha256: &str, yaml: &mut String) {
    write_rules_to(list, options, sha256, yaml, None);
}

/// The same, with the names of the main rule written to `entries` (one per line) instead,
/// and the rule naming the list file `list_name` (`domains_file`), which loads a large list
/// much faster than YAML.
pub fn write_rules_listed(
    list: &ImportedList,
    options: &ImportOptions,
    sha256: &str,
    yaml: &mut String,
    list_name: &str,
    entries: &mut String,
) {
    write_rules_to(list, options, sha256, yaml, Some((list_name, entries)));
}

fn write_rules_to(
    list: &ImportedList,
    options: &ImportOptions,
    sha256: &str,
    yaml: &mut String,
    listed: Option<(&str, &mut String)>,
) {
    let description = format!(
        "Imported from {} ({} format) on {}",
        options.source,
        options.format.as_str(),
        options.date
    );
    write_rule(
        yaml,
        &options.rule_id,
        options.action,
        &options.category,
        &description,
        options,
        sha256,
        &list.domains,
        &list.cidrs,
        listed,
    );
    if !list.exceptions.is_empty() {
        write_rule(
            yaml,
            &format!("{}-exceptions", options.rule_id),
            Action::Allow,
            &options.category,
            &format!("{description}: the list's exceptions (@@ and $denyallow)"),
            options,
            sha256,
            &list.exceptions,
            &[],
            None,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn write_rule(
    yaml: &mut String,
    id: &str,
    action: Action,
    category: &str,
    description: &str,
    options: &ImportOptions,
    sha256: &str,
    domains: &[DomainPattern],
    cidrs: &[IpNet],
    listed: Option<(&str, &mut String)>,
) {
    let _ = writeln!(yaml, "  - id: {id}");
    let _ = writeln!(yaml, "    action: {action}");
    let _ = writeln!(yaml, "    category: {category}");
    let _ = writeln!(yaml, "    description: {}", quote(description));
    let _ = writeln!(yaml, "    references: [{}]", quote(&options.source));
    let _ = writeln!(yaml, "    source:");
    let _ = writeln!(yaml, "      url: {}", quote(&options.source));
    let _ = writeln!(yaml, "      format: {}", options.format.as_str());
    let _ = writeln!(yaml, "      imported: {}", quote(&options.date));
    let _ = writeln!(yaml, "      sha256: {}", quote(sha256));
    match listed {
        Some((name, entries)) if !domains.is_empty() => {
            let _ = writeln!(yaml, "    domains_file: {}", quote(name));
            for domain in domains {
                let _ = writeln!(entries, "{domain}");
            }
        }
        _ if !domains.is_empty() => {
            yaml.push_str("    domains:\n");
            for domain in domains {
                let _ = writeln!(yaml, "      - {}", quote(&domain.to_string()));
            }
        }
        _ => {}
    }
    if !cidrs.is_empty() {
        yaml.push_str("    cidrs:\n");
        for cidr in cidrs {
            let _ = writeln!(yaml, "      - {}", quote(&cidr.to_string()));
        }
    }
}

/// A YAML scalar: plain when it is safe, double-quoted otherwise.
fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && text
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && !matches!(
            text,
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && text.parse::<f64>().is_err()
        && !text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
