//! `telestrip rules diff OLD NEW`: what a rule change would newly block or unblock.

use std::io::Write;
use std::path::Path;

use super::{exit, load_rules, CommandError};
use crate::rules::diff::{self, Change, Verdict};

/// A section of the output: title, line mark, which changes it lists.
type Section = (&'static str, &'static str, fn(&Change) -> bool);

pub fn rules_diff(old: &Path, new: &Path, out: &mut dyn Write) -> Result<u8, CommandError> {
    let (old_files, old_set) = load_rules(Some(old)).map_err(CommandError::Rules)?;
    let (new_files, new_set) = load_rules(Some(new)).map_err(CommandError::Rules)?;
    let result = diff::diff(&old_files, &old_set, &new_files, &new_set);
    let sections: [Section; 3] = [
        ("Newly blocked", "+", Change::newly_blocked),
        ("Unblocked", "-", Change::unblocked),
        (
            "Decided differently (same outcome, other rule or action)",
            "~",
            |c| !c.newly_blocked() && !c.unblocked(),
        ),
    ];
    for (title, mark, select) in sections {
        let changes: Vec<&Change> = result.changes.iter().filter(|c| select(c)).collect();
        if changes.is_empty() {
            continue;
        }
        writeln!(out, "{title} ({}):", changes.len())?;
        let width = changes
            .iter()
            .map(|c| c.probe.shown().len())
            .max()
            .unwrap_or(0);
        for change in changes {
            writeln!(
                out,
                "  {mark} {:width$}  {} -> {}",
                change.probe.shown(),
                shown(&change.old),
                shown(&change.new)
            )?;
        }
    }
    let rules = &result.rules;
    if !rules.added.is_empty() {
        writeln!(out, "Rules added: {}", rules.added.join(", "))?;
    }
    if !rules.removed.is_empty() {
        writeln!(out, "Rules removed: {}", rules.removed.join(", "))?;
    }
    for (id, before, after) in &rules.action_changed {
        writeln!(out, "Rule {id}: action {before} -> {after}")?;
    }
    let blocked = result.changes.iter().filter(|c| c.newly_blocked()).count();
    let unblocked = result.changes.iter().filter(|c| c.unblocked()).count();
    writeln!(
        out,
        "{} names and addresses judged by both rulesets ({} -> {}): {blocked} newly blocked, {unblocked} unblocked, {} decided differently.",
        result.probes,
        old_set.version(),
        new_set.version(),
        result.changes.len() - blocked - unblocked
    )?;
    Ok(
        if result.changes.is_empty()
            && rules.added.is_empty()
            && rules.removed.is_empty()
            && rules.action_changed.is_empty()
        {
            exit::OK
        } else {
            exit::FOUND
        },
    )
}

fn shown(verdict: &Verdict) -> String {
    match verdict {
        Some((rule, action)) => format!("{action} ({rule})"),
        None => "no rule".to_string(),
    }
}
