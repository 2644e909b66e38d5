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
                Ok(secret) if secret.trim_ascii().len() >= 16 => {
                    let epoch = crate::audit::key_epoch(secret.trim_ascii());
                    if audit.compromised_key_epochs.contains(&epoch) {
                        writeln!(
                            out,
                            "error: {}: audit.pseudonymize_key_file: {} (key epoch {epoch}) is listed in audit.compromised_key_epochs; make a new key",
                            file.display(),
                            key.display()
                        )?;
                        problems += 1;
                    } else {
                        writeln!(
                            out,
                            "audit: client addresses pseudonymised, key epoch {epoch}{}",
                            if audit.compromised_key_epochs.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    "; compromised: {}",
                                    audit.compromised_key_epochs.join(", ")
                                )
                            }
                        )?;
                    }
                }
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
    problems += check_control_plane(file, &config, out)?;
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

/// Says how the control plane will be served; a web configuration that does not load is
/// an error (the daemon would not start), serving beyond loopback without TLS and
/// passwords a warning.
fn check_control_plane(
    file: &Path,
    config: &Config,
    out: &mut dyn Write,
) -> std::io::Result<usize> {
    let Some(listen) = config.listen else {
        writeln!(out, "control plane: off (listen: null)")?;
        return Ok(0);
    };
    let web = match &config.web_config_file {
        Some(path) => match crate::server::web::WebConfig::load(path) {
            Ok(web) => Some(web),
            Err(error) => {
                writeln!(out, "error: {}: web_config_file: {error}", file.display())?;
                return Ok(1);
            }
        },
        None => None,
    };
    writeln!(
        out,
        "control plane: {}://{listen}/ ({})",
        web.as_ref().map_or("http", |web| web.scheme()),
        web.as_ref()
            .map_or_else(|| "plain HTTP, no passwords".into(), |web| web.summary())
    )?;
    if let Some(warning) = config.control_plane_warning(web.as_ref()) {
        writeln!(out, "warning: {}: {warning}", file.display())?;
    }
    Ok(0)
}

/// Reads a password from standard input (its first line) and writes its bcrypt hash, for
/// `basic_auth_users` in the control plane's web configuration file.
pub fn hash_password(
    cost: u32,
    input: &mut dyn std::io::BufRead,
    out: &mut dyn Write,
) -> Result<u8, CommandError> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        writeln!(out, "error: no password on standard input")?;
        return Ok(exit::ERROR);
    }
    match bcrypt::hash(password, cost) {
        Ok(hash) => {
            writeln!(out, "{hash}")?;
            Ok(exit::OK)
        }
        Err(error) => {
            writeln!(out, "error: {error}")?;
            Ok(exit::ERROR)
        }
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
