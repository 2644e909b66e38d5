//! `telestrip rules check` and `telestrip rules explain`.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use super::{exit, load_rules, rule_location, CommandError};
use crate::inspect::Name;
use crate::rules::schema::{KeepOverride, KeepWorking};
use crate::rules::{self, lint, Hit, LoadedFile, MatchKind, RuleSet};
use crate::wire::Protocol;

/// Validates and compiles rules, lints them, runs every rule's tests, prints counts and
/// timing. Exit 1 on errors, or on warnings with `strict`.
pub fn rules_check(
    dir: Option<&std::path::Path>,
    strict: bool,
    out: &mut dyn Write,
) -> Result<u8, CommandError> {
    let started = Instant::now();
    let (files, set) = match load_rules(dir) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors.0 {
                writeln!(out, "error: {error}")?;
            }
            writeln!(
                out,
                "{} error(s); the rules were not loaded.",
                errors.0.len()
            )?;
            return Ok(exit::FOUND);
        }
    };
    let elapsed = started.elapsed();
    let stats = set.stats();
    let RuleTestOutcome {
        failures,
        keep_overrides,
    } = run_rule_tests(&files, &set);
    let findings = lint::lint(&files);
    let warnings = findings
        .iter()
        .filter(|f| f.severity == lint::Severity::Warning)
        .count();
    let test_count = count_test_cases(&files);
    for failure in &failures {
        writeln!(out, "error: {failure}")?;
    }
    for finding in &findings {
        let label = match (finding.severity, strict) {
            (lint::Severity::Warning, true) => "error",
            (lint::Severity::Warning, false) => "warning",
            (lint::Severity::Note, _) => "note",
        };
        writeln!(out, "{label}: {}", finding.error)?;
    }
    for note in &keep_overrides {
        writeln!(out, "note: {note}")?;
    }
    writeln!(
        out,
        "{} files, {} rules, {} names, {} regexes, {} CIDRs; read and compiled in {:.1} ms; name table {} bytes ({:.1} bytes/name).",
        stats.files,
        stats.rules,
        stats.names,
        stats.regexes,
        stats.cidrs,
        elapsed.as_secs_f64() * 1000.0,
        stats.name_table_bytes,
        stats.name_table_bytes as f64 / stats.names.max(1) as f64
    )?;
    writeln!(
        out,
        "Rule tests: {} passed, {} failed. Lint: {} warning(s){}. Ruleset version {} (sha256 {}).",
        test_count - failures.len(),
        failures.len(),
        warnings,
        if strict && warnings > 0 {
            ", errors under --strict"
        } else {
            ""
        },
        set.version(),
        set.sha256()
    )?;
    let failed = !failures.is_empty() || (strict && warnings > 0);
    Ok(if failed { exit::FOUND } else { exit::OK })
}

/// How many checked cases the rules of `files` have: `match`/`no_match` cases,
/// `must_keep_working` names and their overrides.
pub(super) fn count_test_cases(files: &[LoadedFile]) -> usize {
    files
        .iter()
        .map(|f| {
            f.spec.must_keep_working.len()
                + f.spec
                    .rules
                    .iter()
                    .map(|r| {
                        r.tests.should_match.len()
                            + r.tests.no_match.len()
                            + r.overrides_must_keep_working.len()
                    })
                    .sum::<usize>()
        })
        .sum()
}

/// The file and entry that put `name` on a `must_keep_working` list.
fn keep_entry<'f>(
    files: &'f [LoadedFile],
    name: &str,
) -> Option<(&'f LoadedFile, &'f KeepWorking)> {
    files.iter().find_map(|file| {
        file.spec
            .must_keep_working
            .iter()
            .find(|keep| keep.name.0 == name)
            .map(|keep| (file, keep))
    })
}

/// `FILE:LINE` of `name`'s must-keep entry, or the file alone when the line is not found.
fn keep_location(file: &LoadedFile, name: &str) -> String {
    match file.line_of_keep_working(name) {
        Some(line) => format!("{}:{line}", file.name),
        None => file.name.clone(),
    }
}

/// Rule `id`'s override of the must-keep name `name`, if it states one.
fn override_of<'f>(files: &'f [LoadedFile], id: &str, name: &str) -> Option<&'f KeepOverride> {
    files
        .iter()
        .flat_map(|f| &f.spec.rules)
        .find(|spec| spec.id.0 == id)?
        .overrides_must_keep_working
        .iter()
        .find(|o| o.name.0 == name)
}

/// Checks every `overrides_must_keep_working` entry: the name must be on a must-keep list
/// and blocked by this very rule. Returns (failures, notes on the overrides that hold).
fn check_keep_overrides(
    files: &[LoadedFile],
    set: &RuleSet,
) -> (Vec<rules::RuleError>, Vec<rules::RuleError>) {
    let mut failures = Vec::new();
    let mut accepted = Vec::new();
    for file in files {
        for spec in &file.spec.rules {
            for entry in &spec.overrides_must_keep_working {
                let name = entry.name.0.as_str();
                let problem = match keep_entry(files, name) {
                    None => Err(format!(
                        "no file lists {name} under must_keep_working; remove the override"
                    )),
                    Some((keep_file, keep)) => {
                        let blockers = set.blockers_of_name(name.as_bytes());
                        match blockers.iter().find(|(rule, _)| *rule.id != *spec.id.0) {
                            Some((other, how)) => Err(format!(
                                "{name} is decided on {how} by rule {} at {}, not by this rule",
                                other.id,
                                rule_location(files, other)
                            )),
                            None if blockers.is_empty() => Err(format!(
                                "the rules do not block {name}; remove the override"
                            )),
                            None => Ok(format!(
                                "rule {} blocks must_keep_working {name} ({}, at {}) by decision: {}",
                                spec.id.0,
                                keep.why,
                                keep_location(keep_file, name),
                                entry.why
                            )),
                        }
                    }
                };
                let (list, message) = match problem {
                    Ok(note) => (&mut accepted, note),
                    Err(why) => (
                        &mut failures,
                        format!(
                            "rule {} overrides must_keep_working {name}, but {why}",
                            spec.id.0
                        ),
                    ),
                };
                list.push(rules::RuleError {
                    file: file.name.clone(),
                    line: file.line_of_keep_override(&spec.id.0, name),
                    column: None,
                    message,
                });
            }
        }
    }
    (failures, accepted)
}

/// What [`run_rule_tests`] found.
pub struct RuleTestOutcome {
    pub failures: Vec<rules::RuleError>,
    /// Notes on the `must_keep_working` names rules block on purpose, with the decision.
    pub keep_overrides: Vec<rules::RuleError>,
}

/// Runs the `tests:` of every rule: each `match` entry must be matched by the rule's own
/// entries, each `no_match` entry must not be; no `must_keep_working` name of any file may
/// be blocked by the whole ruleset, unless the blocking rule overrides it with a reason.
pub fn run_rule_tests(files: &[LoadedFile], set: &RuleSet) -> RuleTestOutcome {
    let (mut failures, keep_overrides) = check_keep_overrides(files, set);
    for file in files {
        for keep in &file.spec.must_keep_working {
            let name = keep.name.0.as_str();
            for (rule, how) in set.blockers_of_name(name.as_bytes()) {
                if override_of(files, &rule.id, name).is_some() {
                    continue;
                }
                failures.push(rules::RuleError {
                    file: file.name.clone(),
                    line: file.line_of_keep_working(&keep.name.0),
                    column: None,
                    message: format!(
                        "must_keep_working {} ({}) is blocked on {how} by rule {} ({}, {}) at {} (to block it on purpose, list it under that rule's overrides_must_keep_working with the reason)",
                        keep.name.0,
                        keep.why,
                        rule.id,
                        rule.vendor,
                        rule.action,
                        rule_location(files, rule)
                    ),
                });
                break;
            }
        }
    }
    let mut index = 0u32;
    for file in files {
        for spec in &file.spec.rules {
            let rule_index = index;
            index += 1;
            let cases = spec
                .tests
                .should_match
                .iter()
                .map(|c| (c, true))
                .chain(spec.tests.no_match.iter().map(|c| (c, false)));
            for (case, expected) in cases {
                let hits = match case.parse::<IpAddr>() {
                    Ok(addr) => set.explain_addr(addr),
                    Err(_) => match Name::from_bytes(case.as_bytes()) {
                        Some(name) => set.explain_name(name.as_bytes()),
                        None => {
                            failures.push(rules::RuleError {
                                file: file.name.clone(),
                                line: file.line_of_test_case(&spec.id.0, case),
                                column: None,
                                message: format!(
                                    "rule {}: test case {case:?} is not a name or address",
                                    spec.id.0
                                ),
                            });
                            continue;
                        }
                    },
                };
                let matched = hits.iter().any(|h| h.rule == rule_index);
                if matched != expected {
                    let message = if expected {
                        format!(
                            "rule {}: test expects {case} to match, but it does not",
                            spec.id.0
                        )
                    } else {
                        format!(
                            "rule {}: test expects {case} not to match, but it does",
                            spec.id.0
                        )
                    };
                    failures.push(rules::RuleError {
                        file: file.name.clone(),
                        line: file.line_of_test_case(&spec.id.0, case),
                        column: None,
                        message,
                    });
                }
            }
        }
    }
    RuleTestOutcome {
        failures,
        keep_overrides,
    }
}

pub struct ExplainOptions {
    pub rules: Option<PathBuf>,
    pub query: String,
    pub port: Option<u16>,
    pub protocol: Option<Protocol>,
    /// Service profiles to consider on (as for a client group that turns them on).
    pub profiles: Vec<String>,
}

/// Says which rule matches a name or address, and why, or why none does.
pub fn rules_explain(options: &ExplainOptions, out: &mut dyn Write) -> Result<u8, CommandError> {
    let (files, set) = load_rules(options.rules.as_deref()).map_err(CommandError::Rules)?;
    let mut enabled = rules::Profiles::NONE;
    for wanted in &options.profiles {
        let profile = set.profile(wanted).ok_or_else(|| {
            CommandError::Usage(format!(
                "no service profile {wanted:?} in these rules (defined: {})",
                profile_list(&set)
            ))
        })?;
        enabled = enabled.with(profile.index);
    }
    let query = options.query.trim();
    let (hits, shown, name) = match query.parse::<IpAddr>() {
        Ok(addr) => (set.explain_addr(addr), addr.to_string(), None),
        Err(_) => {
            let Some(name) = Name::from_bytes(query.as_bytes()) else {
                return Err(CommandError::Usage(format!(
                    "{query:?} is neither an IP address nor a valid host name"
                )));
            };
            if name.as_str() != query {
                writeln!(out, "Normalised {query:?} to {:?} (rules compare lowercase names without trailing dot).", name.as_str())?;
            }
            (
                set.explain_name(name.as_bytes()),
                name.as_str().to_string(),
                Some(name),
            )
        }
    };
    if hits.is_empty() {
        writeln!(out, "No rule matches {shown}.")?;
        if let Some(name) = name {
            for (rule, why) in set.near_misses(name.as_bytes()) {
                if let Some(r) = set.rule(rule) {
                    writeln!(
                        out,
                        "  note: {why} (rule {} at {}).",
                        r.id,
                        rule_location(&files, r)
                    )?;
                }
            }
        }
        return Ok(exit::OK);
    }
    writeln!(out, "{shown} is matched by:")?;
    for hit in &hits {
        let Some(rule) = set.rule(hit.rule) else {
            continue;
        };
        writeln!(
            out,
            "  {} ({}, {}) at {}: {}",
            rule.id,
            rule.vendor,
            rule.action,
            rule_location(&files, rule),
            describe(hit, &shown)
        )?;
        if !rule.description.is_empty() {
            writeln!(out, "      {}", rule.description)?;
        }
        let restrictions = rule.restrictions();
        if !restrictions.is_empty() {
            writeln!(out, "      only for {restrictions}")?;
        }
        if let Some(profile) = &rule.profile {
            let state = if rule.in_force(enabled) {
                "on here (--profile)"
            } else {
                "off unless the config turns it on (try --profile)"
            };
            writeln!(out, "      service profile {}: {state}", profile.name)?;
        }
        for reference in &rule.references {
            writeln!(out, "      see {reference}")?;
        }
    }
    let applicable: Vec<Hit> = hits
        .iter()
        .copied()
        .filter(|h| {
            set.rule(h.rule).is_some_and(|r| {
                options
                    .port
                    .is_none_or(|p| r.ports.is_empty() || r.ports.contains(&p))
                    && options.protocol.is_none_or(|p| r.allows_protocol(p))
                    && r.in_force(enabled)
            })
        })
        .collect();
    let resolved = set.resolve(&applicable, enabled);
    match resolved.and_then(|h| set.rule(h.rule).map(|rule| (h, rule))) {
        Some((won, winner)) => {
            let reason = if applicable.len() == 1 {
                "the only match".to_string()
            } else if winner.action == rules::Action::Allow
                && applicable
                    .iter()
                    .any(|h| set.rule(h.rule).is_some_and(|r| r.action.blocks()))
            {
                "an allow rule beats blocking rules".to_string()
            } else if winner.action.blocks()
                && applicable.iter().any(|h| {
                    h.kind == won.kind
                        && set
                            .rule(h.rule)
                            .is_some_and(|r| r.action == rules::Action::Log)
                })
            {
                "on equally specific entries a blocking rule beats log".to_string()
            } else {
                "the most specific entry wins".to_string()
            };
            let profile = match &winner.profile {
                Some(p) => format!(", service profile {}", p.name),
                None => String::new(),
            };
            writeln!(
                out,
                "Verdict: {} by rule {} ({reason}{profile}).",
                winner.action, winner.id
            )?;
        }
        None => writeln!(
            out,
            "Verdict: no rule applies to the given port/protocol and profiles."
        )?,
    }
    if let Some((file, keep)) = keep_entry(&files, &shown) {
        writeln!(
            out,
            "{shown} is on must_keep_working at {}: {}",
            keep_location(file, &shown),
            keep.why
        )?;
        // One line per blocking rule, with every way it blocks.
        let mut blockers: Vec<(&rules::Rule, Vec<&str>)> = Vec::new();
        for (rule, how) in set.blockers_of_name(shown.as_bytes()) {
            match blockers.iter_mut().find(|(r, _)| r.id == rule.id) {
                Some((_, ways)) => ways.push(how),
                None => blockers.push((rule, vec![how])),
            }
        }
        for (rule, ways) in blockers {
            let how = ways.join(", ");
            match override_of(&files, &rule.id, &shown) {
                Some(entry) => writeln!(
                    out,
                    "  blocked on {how} on purpose by rule {}: {}",
                    rule.id, entry.why
                )?,
                None => writeln!(
                    out,
                    "  blocked on {how} by rule {}, which does not override it: `rules check` fails",
                    rule.id
                )?,
            }
        }
    }
    Ok(exit::OK)
}

/// The profiles a ruleset defines, comma-separated, or "none".
pub fn profile_list(set: &rules::RuleSet) -> String {
    if set.profiles().is_empty() {
        "none".to_string()
    } else {
        set.profiles().join(", ")
    }
}

fn describe(hit: &Hit, shown: &str) -> String {
    match hit.kind {
        MatchKind::Exact => format!("exact entry {shown}"),
        MatchKind::Suffix(len) => {
            let suffix = shown
                .get(shown.len().saturating_sub(len)..)
                .unwrap_or(shown);
            format!("suffix entry *.{suffix}")
        }
        MatchKind::Regex => "a regex: entry".to_string(),
        MatchKind::Cidr(prefix) => match shown.parse::<IpAddr>() {
            Ok(addr) => match ipnet::IpNet::new(addr, prefix) {
                Ok(net) => format!("CIDR entry {}", net.trunc()),
                Err(_) => format!("a /{prefix} CIDR entry"),
            },
            Err(_) => format!("a /{prefix} CIDR entry"),
        },
    }
}
