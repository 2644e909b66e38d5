//! `telestrip rules test`: every rule's `match`/`no_match` cases, and optionally captures
//! checked against a list of expected matches.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::pcap::matched_flows;
use super::rules_cmd::{count_test_cases, run_rule_tests, RuleTestOutcome};
use super::{exit, load_rules, CommandError};
use crate::inspect::Name;

pub struct RulesTestOptions {
    pub rules: Option<PathBuf>,
    pub pcaps: Vec<PathBuf>,
    /// `NAME RULE` lines (`-` as RULE: must not match); needed with `pcaps`.
    pub expect: Option<PathBuf>,
}

/// One line of an expectations file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub line: usize,
    pub name: String,
    /// `None`: the name must not match any rule.
    pub rule: Option<String>,
}

/// Parses `NAME RULE` lines; `#` starts a comment.
pub fn parse_expectations(path: &Path, text: &str) -> Result<Vec<Expectation>, CommandError> {
    let mut expectations = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            CommandError::Usage(format!("{}:{}: {why}: {raw:?}", path.display(), index + 1))
        };
        let mut words = line.split_whitespace();
        let (Some(name), Some(rule), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected `NAME RULE` (RULE `-`: must not match)"));
        };
        let name = Name::from_bytes(name.as_bytes()).ok_or_else(|| bad("not a host name"))?;
        expectations.push(Expectation {
            line: index + 1,
            name: name.as_str().to_string(),
            rule: (rule != "-").then(|| rule.to_string()),
        });
    }
    Ok(expectations)
}

pub fn rules_test(options: &RulesTestOptions, out: &mut dyn Write) -> Result<u8, CommandError> {
    let (files, set) = load_rules(options.rules.as_deref()).map_err(CommandError::Rules)?;
    let mut failed = 0usize;
    let RuleTestOutcome {
        failures,
        keep_overrides,
    } = run_rule_tests(&files, &set);
    for failure in &failures {
        writeln!(out, "FAIL {failure}")?;
    }
    failed += failures.len();
    for note in &keep_overrides {
        writeln!(out, "NOTE {note}")?;
    }
    for file in &files {
        let cases = count_test_cases(std::slice::from_ref(file));
        let failing = failures.iter().filter(|f| f.file == file.name).count();
        writeln!(
            out,
            "{}: {} rules, {} cases, {}",
            file.name,
            file.spec.rules.len(),
            cases,
            if failing == 0 {
                "all pass".to_string()
            } else {
                format!("{failing} failing")
            }
        )?;
    }
    if !options.pcaps.is_empty() {
        let Some(expect) = &options.expect else {
            return Err(CommandError::Usage(
                "--pcap needs --expect FILE (lines `NAME RULE`, `-` for no match)".into(),
            ));
        };
        let text = std::fs::read_to_string(expect)
            .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", expect.display())))?;
        let expectations = parse_expectations(expect, &text)?;
        let (events, problems) = matched_flows(set, &options.pcaps);
        for problem in &problems {
            writeln!(out, "FAIL {problem}")?;
        }
        failed += problems.len();
        // Which rules matched each name in the captures.
        let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for event in &events {
            if let Some(name) = &event.name {
                let rules = seen.entry(name.as_str()).or_default();
                if !rules.contains(&&*event.rule) {
                    rules.push(&event.rule);
                }
            }
        }
        for expectation in &expectations {
            let matched = seen.get(expectation.name.as_str());
            let ok = match (&expectation.rule, matched) {
                (None, None) => true,
                (Some(rule), Some(rules)) => rules.contains(&rule.as_str()),
                _ => false,
            };
            if !ok {
                failed += 1;
                let wanted = expectation
                    .rule
                    .as_deref()
                    .map_or("no match".to_string(), |r| format!("rule {r}"));
                let got =
                    matched.map_or("no match".to_string(), |r| format!("rule {}", r.join(", ")));
                writeln!(
                    out,
                    "FAIL {}:{}: {} expected {wanted}, the captures show {got}",
                    expect.display(),
                    expectation.line,
                    expectation.name
                )?;
            }
        }
        for (name, rules) in &seen {
            if !expectations.iter().any(|e| e.name == *name) {
                failed += 1;
                writeln!(
                    out,
                    "FAIL {name} matched rule {} in the captures, but {} does not list it",
                    rules.join(", "),
                    expect.display()
                )?;
            }
        }
        writeln!(
            out,
            "Captures: {} matched flows, {} names; {} expectations.",
            events.len(),
            seen.len(),
            expectations.len()
        )?;
    }
    writeln!(
        out,
        "{}",
        if failed == 0 {
            "All tests pass.".to_string()
        } else {
            format!("{failed} failure(s).")
        }
    )?;
    Ok(if failed == 0 { exit::OK } else { exit::FOUND })
}
