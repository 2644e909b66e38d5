//! `telestrip config check`: a configuration file checked before the daemon starts (the
//! systemd unit can run it in ExecStartPre): its syntax and values, the rules it points
//! to (loaded, linted, tested as `rules check` does), and the files it names.

use std::io::Write;
use std::path::Path;

use super::{exit, load_rules, rules_check, CommandError};
use crate::config::Config;

pub fn config_check(file: &Path, strict: bool, out: &mut dyn Write) -> Result<u8, CommandError> {
    if let Err(error) = std::fs::metadata(file) {
        writeln!(out, "error: {}: cannot read: {error}", file.display())?;
        return Ok(exit::ERROR);
    }
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(error) => {
            writeln!(out, "error: {error}")?;
            writeln!(
                out,
                "{}: not valid; telestrip would not start.",
                file.display()
            )?;
            return Ok(exit::FOUND);
        }
    };
    let mut problems = 0usize;
    if let Some(audit) = &config.audit {
        let dir = audit.path.parent().unwrap_or(Path::new("."));
        if !dir.is_dir() {
            writeln!(
                out,
                "error: {}: audit.path: the directory {} does not exist",
                file.display(),
                dir.display()
            )?;
            problems += 1;
        }
        if let Some(key) = &audit.pseudonymize_key_file {
            match std::fs::read(key) {
                Ok(secret) if secret.trim_ascii().len() >= 16 => {}
                Ok(_) => {
                    writeln!(
                        out,
                        "error: {}: audit.pseudonymize_key_file: {} holds fewer than 16 bytes",
                        file.display(),
                        key.display()
                    )?;
                    problems += 1;
                }
                Err(error) => {
                    writeln!(
                        out,
                        "error: {}: audit.pseudonymize_key_file: {}: {error}",
                        file.display(),
                        key.display()
                    )?;
                    problems += 1;
                }
            }
        }
    }
    writeln!(
        out,
        "rules: {}",
        config
            .rules
            .as_ref()
            .map_or_else(|| "bundled".to_string(), |p| p.display().to_string())
    )?;
    if let Some(update) = &config.rules_update {
        let store = update.store();
        let in_force = match (update.key(), store.current()) {
            (Ok(key), Some(number)) => match store.load(number, &key) {
                Ok(g) => format!(
                    "generation {number} (ruleset version {}, expires {}) in force",
                    g.record.ruleset_version, g.record.expires
                ),
                // A warning only: the daemon then starts from an older generation.
                Err(error) => format!(
                    "warning: generation {number} in force does not verify ({error}); the daemon starts from the newest older one that does"
                ),
            },
            _ => "no generation yet: the rules below run until the first update".into(),
        };
        writeln!(
            out,
            "rules_update: from {}, state in {}; {in_force}",
            update.source,
            update.state_dir.display()
        )?;
    }
    let rules = rules_check(config.rules.as_deref(), strict, out)?;
    if let Ok((_, set)) = load_rules(config.rules.as_deref()) {
        problems += check_profiles(file, &config, &set, out)?;
    }
    if problems == 0 && rules == exit::OK {
        writeln!(
            out,
            "{}: OK (gateway {}{})",
            file.display(),
            config.gateway_name(),
            config
                .site
                .as_ref()
                .map_or_else(String::new, |site| format!(", site {site}"))
        )?;
        Ok(exit::OK)
    } else {
        writeln!(
            out,
            "{}: not valid; telestrip would not start.",
            file.display()
        )?;
        Ok(exit::FOUND)
    }
}

/// Lists the service profiles and client groups, and counts the profiles the config turns
/// on that the rules do not define (each an error: what it should re-open stays blocked).
fn check_profiles(
    file: &Path,
    config: &Config,
    set: &crate::rules::RuleSet,
    out: &mut dyn Write,
) -> Result<usize, CommandError> {
    let on = |profiles: &[String]| {
        if profiles.is_empty() {
            "none".to_string()
        } else {
            profiles.join(", ")
        }
    };
    writeln!(
        out,
        "service profiles: defined by the rules: {}; on for every client: {}",
        super::rules_cmd::profile_list(set),
        on(&config.profiles)
    )?;
    for group in &config.clients {
        let prefixes: Vec<String> = group.prefixes.iter().map(ToString::to_string).collect();
        let enforce = match group.enforce {
            Some(true) => "enforcing",
            Some(false) => "dry run",
            None => "enforcement as the gateway",
        };
        writeln!(
            out,
            "client group {}: {}; profiles: {}; {enforce}",
            group.name,
            prefixes.join(", "),
            on(&group.profiles)
        )?;
    }
    let unknown = config.unknown_profiles(set);
    for name in &unknown {
        writeln!(
            out,
            "error: {}: service profile {name:?} is turned on but the rules do not define it \
             (defined: {})",
            file.display(),
            super::rules_cmd::profile_list(set)
        )?;
    }
    Ok(unknown.len())
}
