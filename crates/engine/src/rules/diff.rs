//! `telestrip rules diff OLD NEW`: what a rule change would newly block, unblock or treat
//! differently. Compares verdicts, not text: every entry and test case of either ruleset is
//! judged by both, so a moved entry, a new allow rule or a wider suffix shows up by its effect.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::schema::DomainPattern;
use super::{Action, LoadedFile, RuleSet};
use crate::inspect::Name;

/// A name (or address) judged by both rulesets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Probe {
    /// That name.
    Name(String),
    /// Names below `*.this` (judged through a made-up name one label below it).
    Below(String),
    Address(IpAddr),
}

/// Label used to stand for "any name below" a suffix entry.
const BELOW_LABEL: &str = "telestrip-diff-probe";

impl Probe {
    pub fn shown(&self) -> String {
        match self {
            Probe::Name(name) => name.clone(),
            Probe::Below(name) => format!("*.{name}"),
            Probe::Address(addr) => addr.to_string(),
        }
    }
}

/// The rule that decides a probe: its id and action (`None`: no rule matches).
pub type Verdict = Option<(String, Action)>;

/// One probe whose verdict differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub probe: Probe,
    pub old: Verdict,
    pub new: Verdict,
}

impl Change {
    pub fn newly_blocked(&self) -> bool {
        !blocks(&self.old) && blocks(&self.new)
    }

    pub fn unblocked(&self) -> bool {
        blocks(&self.old) && !blocks(&self.new)
    }
}

fn blocks(verdict: &Verdict) -> bool {
    verdict.as_ref().is_some_and(|(_, a)| a.blocks())
}

/// Rules added, removed, or with another action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// (id, old action, new action)
    pub action_changed: Vec<(String, Action, Action)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RulesDiff {
    pub changes: Vec<Change>,
    pub rules: RuleChanges,
    pub probes: usize,
}

/// Judges every entry and test case of both rulesets with both.
pub fn diff(
    old_files: &[LoadedFile],
    old: &RuleSet,
    new_files: &[LoadedFile],
    new: &RuleSet,
) -> RulesDiff {
    let mut probes = BTreeMap::new();
    for file in old_files.iter().chain(new_files) {
        for rule in &file.spec.rules {
            for domain in &rule.domains {
                let probe = match domain {
                    DomainPattern::Exact(name) => Probe::Name(name.clone()),
                    DomainPattern::Suffix(name) => Probe::Below(name.clone()),
                    // Regexes are judged through the rule's test cases.
                    DomainPattern::Regex(_) => continue,
                };
                probes.insert(probe, ());
            }
            for cidr in &rule.cidrs {
                probes.insert(Probe::Address(cidr.0.network()), ());
            }
            let cases = rule.tests.should_match.iter().chain(&rule.tests.no_match);
            for case in cases {
                let probe = match case.parse::<IpAddr>() {
                    Ok(addr) => Probe::Address(addr),
                    Err(_) => match Name::from_bytes(case.as_bytes()) {
                        Some(name) => Probe::Name(name.as_str().to_string()),
                        None => continue,
                    },
                };
                probes.insert(probe, ());
            }
        }
    }
    let changes = probes
        .keys()
        .filter_map(|probe| {
            let (old_verdict, new_verdict) = (verdict(old, probe), verdict(new, probe));
            (old_verdict != new_verdict).then(|| Change {
                probe: probe.clone(),
                old: old_verdict,
                new: new_verdict,
            })
        })
        .collect();
    RulesDiff {
        changes,
        rules: rule_changes(old_files, new_files),
        probes: probes.len(),
    }
}

fn verdict(set: &RuleSet, probe: &Probe) -> Verdict {
    let hits = match probe {
        Probe::Name(name) => set.explain_name(name.as_bytes()),
        Probe::Below(name) => set.explain_name(format!("{BELOW_LABEL}.{name}").as_bytes()),
        Probe::Address(addr) => set.explain_addr(*addr),
    };
    let hit = set.resolve(&hits, super::Profiles::NONE)?;
    let rule = set.rule(hit.rule)?;
    Some((rule.id.to_string(), rule.action))
}

fn rule_changes(old_files: &[LoadedFile], new_files: &[LoadedFile]) -> RuleChanges {
    let actions = |files: &[LoadedFile]| -> BTreeMap<String, Action> {
        files
            .iter()
            .flat_map(|f| &f.spec.rules)
            .map(|r| (r.id.0.clone(), r.action))
            .collect()
    };
    let (old, new) = (actions(old_files), actions(new_files));
    let mut changes = RuleChanges::default();
    for (id, action) in &new {
        match old.get(id) {
            None => changes.added.push(id.clone()),
            Some(before) if before != action => {
                changes.action_changed.push((id.clone(), *before, *action));
            }
            Some(_) => {}
        }
    }
    changes.removed = old
        .keys()
        .filter(|id| !new.contains_key(*id))
        .cloned()
        .collect();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{load_sources, Source};

    fn load(text: &str) -> (Vec<LoadedFile>, RuleSet) {
        let files = load_sources(vec![Source {
            name: "t.yaml".into(),
            text: format!("vendor: t\nrules:\n{text}"),
        }])
        .unwrap();
        let set = RuleSet::compile(&files).unwrap();
        (files, set)
    }

    #[test]
    fn reports_verdict_changes_not_text_changes() {
        let (old_files, old) = load(
            "  - id: a\n    action: drop\n    domains: [t.example, moved.example, \"*.wide.example\"]\n  - id: gone\n    action: drop\n    domains: [gone.example]\n",
        );
        let (new_files, new) = load(
            "  - id: a\n    action: drop\n    domains: [t.example, new.example]\n  - id: b\n    action: drop\n    domains: [moved.example, \"*.wide.example\"]\n  - id: ok\n    action: allow\n    domains: [t.example]\n",
        );
        let result = diff(&old_files, &old, &new_files, &new);
        let shown: Vec<(String, bool, bool)> = result
            .changes
            .iter()
            .map(|c| (c.probe.shown(), c.newly_blocked(), c.unblocked()))
            .collect();
        assert_eq!(
            shown,
            [
                ("gone.example".to_string(), false, true),
                ("moved.example".to_string(), false, false),
                ("new.example".to_string(), true, false),
                ("t.example".to_string(), false, true),
                ("*.wide.example".to_string(), false, false),
            ]
        );
        assert_eq!(result.changes[1].new, Some(("b".to_string(), Action::Drop)));
        assert_eq!(result.rules.added, ["b", "ok"]);
        assert_eq!(result.rules.removed, ["gone"]);
    }

    #[test]
    fn identical_rulesets_have_no_changes_and_actions_are_reported() {
        let text =
            "  - id: a\n    action: drop\n    domains: [t.example]\n    cidrs: [192.0.2.0/24]\n";
        let (files, set) = load(text);
        assert_eq!(diff(&files, &set, &files, &set).changes, []);
        let (log_files, log) = load(&text.replace("drop", "log"));
        let result = diff(&files, &set, &log_files, &log);
        assert_eq!(result.changes.len(), 2);
        assert!(result.changes.iter().all(Change::unblocked));
        assert_eq!(
            result.rules.action_changed,
            [("a".to_string(), Action::Drop, Action::Log)]
        );
    }
}
