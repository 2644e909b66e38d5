//! Which rules the daemon runs. With `rules_update:`, the newest generation of signed packs
//! that still verifies (the one in force first); before the first accepted update, or when
//! none verifies, the `rules:` directory or the bundled rules: never nothing.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::config::Config;
use crate::rulepack::store::Switch;
use crate::rulepack::GenerationRecord;
use crate::rules::{load_rules, load_sources, RuleSet};

/// Where the loaded rules came from.
#[derive(Debug, Clone)]
pub enum Origin {
    Bundled,
    Directory(PathBuf),
    Generation(Box<GenerationOrigin>),
}

#[derive(Debug, Clone)]
pub struct GenerationOrigin {
    pub record: GenerationRecord,
    pub expires: Option<SystemTime>,
    /// How `current` came to point here (absent when an older generation stands in for a
    /// broken current one).
    pub switch: Option<Switch>,
    /// Whether this is the generation `current` points at.
    pub is_current: bool,
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Bundled => "the bundled rules".into(),
            Origin::Directory(dir) => dir.display().to_string(),
            Origin::Generation(g) => format!(
                "generation {} (ruleset version {} from {}, key {})",
                g.record.generation, g.record.ruleset_version, g.record.source, g.record.key_id
            ),
        }
    }
}

pub struct Loaded {
    pub set: RuleSet,
    pub origin: Origin,
    /// Generations passed over, each with the reason.
    pub skipped: Vec<String>,
}

/// Loads the rules the config asks for; `Err` only when the fallback has errors too.
pub fn load(config: &Config) -> Result<Loaded, String> {
    let mut skipped = Vec::new();
    if let Some(update) = &config.rules_update {
        let store = update.store();
        match update.key() {
            Ok(key) => {
                let current = store.current();
                let switch = store.state().ok().and_then(|s| s.current);
                for number in store.boot_order() {
                    let generation = match store.load(number, &key) {
                        Ok(generation) => generation,
                        Err(error) => {
                            skipped.push(error);
                            continue;
                        }
                    };
                    let compiled =
                        load_sources(generation.sources).and_then(|f| RuleSet::compile(&f));
                    match compiled {
                        Ok(set) => {
                            let is_current = current == Some(number);
                            return Ok(Loaded {
                                set,
                                origin: Origin::Generation(Box::new(GenerationOrigin {
                                    expires: generation.manifest.expires_at().ok(),
                                    record: generation.record,
                                    switch: switch.filter(|s| is_current && s.generation == number),
                                    is_current,
                                })),
                                skipped,
                            });
                        }
                        Err(errors) => skipped.push(format!("generation {number}: {errors}")),
                    }
                }
            }
            Err(error) => skipped.push(format!("rules_update: {error}")),
        }
    }
    let (_, set) = load_rules(config.rules.as_deref()).map_err(|e| e.to_string())?;
    let origin = config
        .rules
        .clone()
        .map_or(Origin::Bundled, Origin::Directory);
    Ok(Loaded {
        set,
        origin,
        skipped,
    })
}

/// The path whose files the daemon watches for changes.
pub fn watch_path(config: &Config) -> Option<PathBuf> {
    match &config.rules_update {
        Some(update) => Some(update.store().current_path()),
        None => config.rules.clone(),
    }
}

/// What the daemon must still be able to read after dropping privileges, for reloads.
pub fn readable_path(config: &Config) -> Option<PathBuf> {
    match &config.rules_update {
        Some(update) if update.state_dir.exists() => Some(update.state_dir.clone()),
        _ => config.rules.clone(),
    }
}
