//! Signed rule distribution: `rules publish` (maintainers), `rules update`, `rules rollback`
//! and `rules status` (admins of the gateways).

mod fetch;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fetch::{FetchError, Fetched, PackSource, Validators};

use super::{exit, rules_cmd::run_rule_tests, CommandError};
use crate::config::{Config, RulesUpdateConfig};
use crate::inspect::Name;
use crate::rulepack::manifest::{self, Manifest, PackError, PackFile, MANIFEST, SIGNATURE};
use crate::rulepack::store::{write_atomically, Switch, SAMPLE};
use crate::rulepack::{GenerationRecord, Store, UpdateState};
use crate::rules::{self, lint, LoadedFile, RuleSet, Source};

const TELESTRIP_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit code of `rules update` when the source could not be reached or read (the rules in
/// force stay; the next run tries again).
pub const UNREACHABLE: u8 = 3;

pub struct PublishOptions {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub password_file: Option<PathBuf>,
    pub output: PathBuf,
    pub version: Option<u64>,
    pub valid_for: Duration,
    pub min_telestrip: Option<String>,
    pub allow_lint_warnings: bool,
}

/// Checks the rules, then writes them with a signed manifest into the output directory.
pub fn rules_publish(options: &PublishOptions, out: &mut dyn Write) -> Result<u8, CommandError> {
    let files = match rules::load_dir(&options.dir) {
        Ok(files) => files,
        Err(errors) => return Err(CommandError::Rules(errors)),
    };
    let set = RuleSet::compile(&files).map_err(CommandError::Rules)?;
    let problems = pack_problems(&files, &set, options.allow_lint_warnings);
    if !problems.is_empty() {
        for problem in &problems {
            writeln!(out, "error: {problem}")?;
        }
        writeln!(
            out,
            "{} problem(s): nothing published (the rules must pass `telestrip rules check --strict`).",
            problems.len()
        )?;
        return Ok(exit::FOUND);
    }
    let secret = read_secret_key(&options.key, options.password_file.as_deref())?;
    let public = minisign::PublicKey::from_secret_key(&secret)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", options.key.display())))?;
    let previous = previous_version(&options.output)?;
    let version = match (options.version, previous) {
        (Some(v), Some(p)) if v <= p => {
            return Err(CommandError::Usage(format!(
                "--ruleset-version {v} is not above {p}, the version already published in {} (gateways refuse a version they have seen)",
                options.output.display()
            )))
        }
        (Some(v), _) => v,
        (None, Some(p)) => p + 1,
        (None, None) => 1,
    };
    let mut pack_files = Vec::new();
    let mut contents = Vec::new();
    // Rule files, and the list files their rules name.
    let sources = files.iter().flat_map(|file| {
        std::iter::once((file.name.as_str(), file.text.as_bytes())).chain(
            file.lists
                .iter()
                .map(|list| (list.name.as_str(), list.text.as_bytes())),
        )
    });
    for (path, text) in sources {
        let name = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !manifest::valid_file_name(&name) {
            return Err(CommandError::Usage(
                PackError::BadFileName(name).to_string(),
            ));
        }
        if contents.iter().any(|(n, _)| *n == name) {
            continue;
        }
        pack_files.push(PackFile::of(&name, text));
        contents.push((name, text));
    }
    let now = SystemTime::now();
    let manifest = Manifest {
        format: manifest::FORMAT,
        ruleset_version: version,
        issued: humantime::format_rfc3339_seconds(now).to_string(),
        expires: humantime::format_rfc3339_seconds(now + options.valid_for).to_string(),
        min_telestrip: options
            .min_telestrip
            .clone()
            .unwrap_or_else(|| TELESTRIP_VERSION.to_string()),
        files: pack_files,
    };
    let mut manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| CommandError::Usage(e.to_string()))?;
    manifest_bytes.push(b'\n');
    let trusted = format!(
        "timestamp:{}\tfile:{MANIFEST}\ttelestrip ruleset {version}",
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    );
    let signature = minisign::sign(
        Some(&public),
        &secret,
        std::io::Cursor::new(&manifest_bytes),
        Some(&trusted),
        Some("telestrip rule pack signature"),
    )
    .map_err(|e| CommandError::Usage(format!("signing: {e}")))?
    .into_string();
    std::fs::create_dir_all(&options.output)?;
    let keep: BTreeSet<&str> = contents.iter().map(|(n, _)| n.as_str()).collect();
    for entry in std::fs::read_dir(&options.output)? {
        let path = entry?.path();
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| manifest::valid_file_name(n) && !keep.contains(n));
        if stale {
            std::fs::remove_file(&path)?;
        }
    }
    // Rule files first, the manifest last: a client in between sees hashes that do not match
    // and keeps its rules until the next run.
    for (name, bytes) in &contents {
        write_atomically(&options.output.join(name), bytes)?;
    }
    write_atomically(&options.output.join(SIGNATURE), signature.as_bytes())?;
    write_atomically(&options.output.join(MANIFEST), &manifest_bytes)?;
    let key_id = manifest::key_id(public.keynum());
    writeln!(
        out,
        "Published ruleset version {version} ({} files, {} rules, {} names, {} CIDRs) to {}, signed with key {key_id}, valid until {}.",
        contents.len(),
        set.stats().rules,
        set.stats().names,
        set.stats().cidrs,
        options.output.display(),
        manifest.expires
    )?;
    writeln!(
        out,
        "Check it with: minisign -Vm {} -p PUBLIC_KEY_FILE",
        options.output.join(MANIFEST).display()
    )?;
    Ok(exit::OK)
}

/// The version in an existing manifest of the output directory, if any.
fn previous_version(output: &Path) -> Result<Option<u64>, CommandError> {
    match std::fs::read(output.join(MANIFEST)) {
        Ok(bytes) => serde_json::from_slice::<Manifest>(&bytes)
            .map(|m| Some(m.ruleset_version))
            .map_err(|e| {
                CommandError::Usage(format!(
                    "{}: cannot read the previous manifest ({e}); give --ruleset-version explicitly",
                    output.join(MANIFEST).display()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A minisign secret key (`minisign -G`), decrypted with the password from
/// `password_file`, `TELESTRIP_KEY_PASSWORD`, or asked for on the terminal; or an
/// unencrypted key written by the minisign crate.
fn read_secret_key(
    path: &Path,
    password_file: Option<&Path>,
) -> Result<minisign::SecretKey, CommandError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CommandError::Usage(format!("{shown}: cannot read the secret key: {e}")))?;
    let plain = minisign::SecretKey::from_unencrypted_box(
        minisign::SecretKeyBox::from_string(&text)
            .map_err(|e| CommandError::Usage(format!("{shown}: {e}")))?,
    );
    match plain {
        Ok(key) => return Ok(key),
        // The crate reads the checksum of unencrypted keys differently from minisign 0.11.
        Err(e) if e.to_string().contains("Corrupted") => {
            return Err(CommandError::Usage(format!(
                "{shown}: this unencrypted secret key cannot be read (keys written by `minisign -G -W` carry a checksum the minisign crate does not accept); use a password-protected key (`minisign -G`) with --password-file or TELESTRIP_KEY_PASSWORD"
            )))
        }
        Err(_) => {}
    }
    let password = match password_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| CommandError::Usage(format!("{}: {e}", file.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        None => std::env::var("TELESTRIP_KEY_PASSWORD").ok(),
    };
    let boxed = minisign::SecretKeyBox::from_string(&text)
        .map_err(|e| CommandError::Usage(format!("{shown}: {e}")))?;
    minisign::SecretKey::from_box(boxed, password)
        .map_err(|e| CommandError::Usage(format!("{shown}: {e}")))
}

/// What keeps rules from being published or accepted: failing rule tests, lint warnings.
fn pack_problems(files: &[LoadedFile], set: &RuleSet, allow_lint_warnings: bool) -> Vec<String> {
    let mut problems: Vec<String> = run_rule_tests(files, set)
        .failures
        .iter()
        .map(ToString::to_string)
        .collect();
    if !allow_lint_warnings {
        problems.extend(
            lint::lint(files)
                .into_iter()
                .filter(|f| f.severity == lint::Severity::Warning)
                .map(|f| format!("lint: {}", f.error)),
        );
    }
    problems
}

/// The names and address blocks of a ruleset, as written.
fn entries(files: &[LoadedFile]) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|f| &f.spec.rules)
        .flat_map(|rule| {
            rule.domains
                .iter()
                .map(ToString::to_string)
                .chain(rule.cidrs.iter().map(|c| c.0.to_string()))
        })
        .collect()
}

/// The first must-keep-working name the rules would block, with the rule.
fn blocked_must_keep(set: &RuleSet, names: &[String]) -> Option<(String, String)> {
    names.iter().find_map(|name| {
        let parsed = Name::from_bytes(name.as_bytes())?;
        let (rule, _) = set.blocks_name(parsed.as_bytes())?;
        Some((name.clone(), format!("{} ({})", rule.id, rule.file)))
    })
}

/// Why an update did not put a new pack in force.
enum Outcome {
    /// A new generation is in force.
    Accepted(GenerationRecord),
    /// Nothing new at the source (304, or the version already accepted).
    Unchanged(String),
    /// The pack was refused; the rules in force stay.
    Refused(String),
    /// The source could not be reached or read; the rules in force stay.
    Unreachable(String),
}

pub struct UpdateOptions {
    pub config: PathBuf,
    /// Another source than the config's (a medium carried to an air-gapped site).
    pub from: Option<String>,
}

/// Fetches, verifies and checks the publisher's pack, and puts it in force as a new
/// generation; anything wrong leaves the rules in force as they are.
pub fn rules_update(options: &UpdateOptions, out: &mut dyn Write) -> Result<u8, CommandError> {
    let (config, update) = load_update_config(&options.config)?;
    let store = Store::open(&update.state_dir)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", update.state_dir.display())))?;
    let _writer = store.lock()?;
    let mut state = store.state().map_err(CommandError::Usage)?;
    let source = options
        .from
        .clone()
        .unwrap_or_else(|| update.source.clone());
    let now = SystemTime::now();
    state.last_attempt = unix(now);
    let outcome = update_from(&config, &update, &store, &mut state, &source, now);
    let code = match &outcome {
        Outcome::Accepted(record) => {
            writeln!(
                out,
                "Accepted ruleset version {} from {source} (key {}): generation {}, {} entries ({} added, {} removed), valid until {}.",
                record.ruleset_version,
                record.key_id,
                record.generation,
                record.entries,
                record.added,
                record.removed,
                record.expires
            )?;
            if config.rules_poll_ms == 0 {
                writeln!(out, "The daemon does not watch its rules (rules_poll_ms: 0): reload it (systemctl reload telestrip).")?;
            }
            exit::OK
        }
        Outcome::Unchanged(why) => {
            writeln!(out, "No new rules from {source}: {why}.")?;
            exit::OK
        }
        Outcome::Refused(why) => {
            writeln!(
                out,
                "Refused the rules from {source}: {why}. The rules in force stay."
            )?;
            exit::FOUND
        }
        Outcome::Unreachable(why) => {
            writeln!(
                out,
                "Could not update from {source}: {why}. The rules in force stay."
            )?;
            UNREACHABLE
        }
    };
    match &outcome {
        Outcome::Accepted(_) | Outcome::Unchanged(_) => {
            state.last_success = unix(now);
            state.consecutive_failures = 0;
            state.last_error = None;
        }
        Outcome::Refused(why) | Outcome::Unreachable(why) => {
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            state.last_error = Some(why.clone());
        }
    }
    store.save_state(&state)?;
    Ok(code)
}

fn load_update_config(path: &Path) -> Result<(Config, RulesUpdateConfig), CommandError> {
    let config = Config::load(path).map_err(|e| CommandError::Usage(e.to_string()))?;
    let update = config.rules_update.clone().ok_or_else(|| {
        CommandError::Usage(format!(
            "{}: no rules_update: section (source, public_key) to update from",
            path.display()
        ))
    })?;
    Ok((config, update))
}

fn update_from(
    config: &Config,
    update: &RulesUpdateConfig,
    store: &Store,
    state: &mut UpdateState,
    source_name: &str,
    now: SystemTime,
) -> Outcome {
    let key = match update.key() {
        Ok(key) => key,
        Err(e) => return Outcome::Refused(format!("rules_update: {e}")),
    };
    let source = match PackSource::open(
        source_name,
        update.attempts,
        Duration::from_secs(update.timeout_seconds),
    ) {
        Ok(source) => source,
        Err(FetchError::Unreachable(e)) => return Outcome::Unreachable(e),
        Err(refused) => return Outcome::Refused(refused.to_string()),
    };
    let same_source = state.source.as_deref() == Some(source_name);
    let validators = Validators {
        etag: state.etag.clone().filter(|_| same_source),
        last_modified: state.last_modified.clone().filter(|_| same_source),
    };
    let (manifest_bytes, etag, last_modified) =
        match source.get(MANIFEST, fetch::MANIFEST_LIMIT, Some(&validators)) {
            Ok(Fetched::NotModified) => {
                return Outcome::Unchanged("the manifest did not change (HTTP 304)".into())
            }
            Ok(Fetched::Body {
                bytes,
                etag,
                last_modified,
            }) => (bytes, etag, last_modified),
            Err(FetchError::Unreachable(e)) => return Outcome::Unreachable(e),
            Err(refused) => return Outcome::Refused(refused.to_string()),
        };
    let signature = match source.get(SIGNATURE, fetch::MANIFEST_LIMIT, None) {
        Ok(Fetched::Body { bytes, .. }) => bytes,
        Ok(Fetched::NotModified) => return Outcome::Unreachable("unexpected HTTP 304".into()),
        Err(FetchError::Unreachable(e)) => return Outcome::Unreachable(e),
        Err(refused) => return Outcome::Refused(refused.to_string()),
    };
    let manifest = match manifest::verify(&key, &manifest_bytes, &signature)
        .and_then(|m| m.check(now, TELESTRIP_VERSION).map(|()| m))
    {
        Ok(manifest) => manifest,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let high_water = state.high_water.get(key.id()).copied().unwrap_or(0);
    if manifest.ruleset_version <= high_water {
        let accepted_before = store.generations().into_iter().rev().find(|n| {
            store
                .load(*n, &key)
                .is_ok_and(|g| g.manifest.ruleset_version == manifest.ruleset_version)
        });
        return match accepted_before {
            Some(number) if manifest.ruleset_version == high_water => {
                remember_validators(state, source_name, etag, last_modified);
                let in_force = store.current() == Some(number);
                if in_force {
                    Outcome::Unchanged(format!(
                        "version {} is in force (generation {number})",
                        manifest.ruleset_version
                    ))
                } else {
                    Outcome::Unchanged(format!(
                        "version {} was accepted before (generation {number}) and rolled back; `telestrip rules rollback --to {number}` puts it in force again, a newer version replaces it",
                        manifest.ruleset_version
                    ))
                }
            }
            _ => Outcome::Refused(format!(
                "ruleset version {} is not newer than version {high_water}, the highest accepted from key {} (a replayed or rolled-back manifest)",
                manifest.ruleset_version,
                key.id()
            )),
        };
    }
    // Files unchanged since the generation in force are copied from disk, not downloaded.
    let in_force = store.current().and_then(|n| store.load(n, &key).ok());
    let mut files = Vec::new();
    for entry in &manifest.files {
        let reused = in_force.as_ref().and_then(|g| {
            let old = g.manifest.file(&entry.name)?;
            (old.sha256 == entry.sha256).then_some(())?;
            let text = &g
                .sources
                .iter()
                .find(|s| s.name == store.source_name(&entry.name))?
                .text;
            Some(text.as_bytes().to_vec())
        });
        let bytes = match reused {
            Some(bytes) => bytes,
            None => match source.get(&entry.name, entry.bytes, None) {
                Ok(Fetched::Body { bytes, .. }) => bytes,
                Ok(Fetched::NotModified) => {
                    return Outcome::Unreachable("unexpected HTTP 304".into())
                }
                Err(FetchError::Unreachable(e)) => return Outcome::Unreachable(e),
                Err(FetchError::TooLarge { .. }) => {
                    return Outcome::Refused(format!(
                        "{}: larger than the {} bytes the manifest says (changed after signing, or another file)",
                        entry.name, entry.bytes
                    ))
                }
                Err(FetchError::Refused(e)) => return Outcome::Refused(e),
            },
        };
        if manifest::looks_like_html(&bytes) {
            return Outcome::Refused(format!(
                "{} is an HTML page, not a rule file (an error page of the server?)",
                entry.name
            ));
        }
        if let Err(e) = entry.check(&bytes) {
            return Outcome::Refused(e.to_string());
        }
        files.push((entry.name.clone(), bytes));
    }
    let sources: Result<Vec<Source>, String> = files
        .iter()
        .map(|(name, bytes)| {
            Ok(Source {
                name: store.source_name(name),
                text: String::from_utf8(bytes.clone())
                    .map_err(|_| format!("{name}: not UTF-8 text"))?,
            })
        })
        .collect();
    let sources = match sources {
        Ok(sources) => sources,
        Err(e) => return Outcome::Refused(e),
    };
    let loaded = match rules::load_sources(sources) {
        Ok(loaded) => loaded,
        Err(errors) => return Outcome::Refused(format!("the rules have errors:\n{errors}")),
    };
    let set = match RuleSet::compile(&loaded) {
        Ok(set) => set,
        Err(errors) => return Outcome::Refused(format!("the rules do not compile:\n{errors}")),
    };
    let problems = pack_problems(&loaded, &set, update.allow_lint_warnings);
    if !problems.is_empty() {
        return Outcome::Refused(format!(
            "the rules fail their checks ({} problem(s)):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ));
    }
    if let Some((name, rule)) = blocked_must_keep(&set, &update.must_keep_working) {
        return Outcome::Refused(format!(
            "rule {rule} would block {name}, which is on this site's must_keep_working list"
        ));
    }
    let old_entries = in_force_entries(config, store, &key, in_force.as_ref());
    let new_entries = entries(&loaded);
    let removed: Vec<&String> = old_entries.difference(&new_entries).collect();
    let added: Vec<&String> = new_entries.difference(&old_entries).collect();
    let limit = old_entries.len() * usize::from(update.max_removed_percent) / 100;
    if !old_entries.is_empty() && removed.len() > limit {
        return Outcome::Refused(format!(
            "it removes {} of the {} entries in force ({:.1}%, more than max_removed_percent {}%), e.g. {}",
            removed.len(),
            old_entries.len(),
            removed.len() as f64 * 100.0 / old_entries.len() as f64,
            update.max_removed_percent,
            removed
                .iter()
                .take(5)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let number = state
        .next_generation
        .max(store.generations().last().map_or(1, |n| n + 1));
    let record = GenerationRecord {
        generation: number,
        ruleset_version: manifest.ruleset_version,
        previous_version: in_force.as_ref().map(|g| g.manifest.ruleset_version),
        key_id: key.id().to_string(),
        source: source_name.to_string(),
        issued: manifest.issued.clone(),
        expires: manifest.expires.clone(),
        accepted: humantime::format_rfc3339_seconds(now).to_string(),
        entries: new_entries.len(),
        added: added.len(),
        removed: removed.len(),
        added_sample: added.iter().take(SAMPLE).map(|s| s.to_string()).collect(),
        removed_sample: removed.iter().take(SAMPLE).map(|s| s.to_string()).collect(),
    };
    let written = store
        .add_generation(number, &files, &manifest_bytes, &signature, &record)
        .and_then(|_| store.switch(number));
    if let Err(e) = written {
        return Outcome::Unreachable(format!(
            "cannot write generation {number} in {}: {e}",
            store.dir().display()
        ));
    }
    state
        .high_water
        .insert(key.id().to_string(), manifest.ruleset_version);
    state.next_generation = number + 1;
    state.current = Some(Switch {
        generation: number,
        by: "update".into(),
        at: record.accepted.clone(),
    });
    remember_validators(state, source_name, etag, last_modified);
    store.prune(update.keep);
    Outcome::Accepted(record)
}

fn remember_validators(
    state: &mut UpdateState,
    source: &str,
    etag: Option<String>,
    last_modified: Option<String>,
) {
    state.source = Some(source.to_string());
    state.etag = etag;
    state.last_modified = last_modified;
}

/// The entries of the rules the daemon would run now: `current` (already loaded by the
/// caller), else the next generation the daemon would fall back to, else the configured
/// rules before the first update.
fn in_force_entries(
    config: &Config,
    store: &Store,
    key: &crate::rulepack::PublicKey,
    current: Option<&crate::rulepack::Generation>,
) -> BTreeSet<String> {
    let from_generation = match current {
        Some(generation) => Some(generation.sources.clone()),
        None => {
            let broken_current = store.current();
            store
                .boot_order()
                .into_iter()
                .filter(|n| Some(*n) != broken_current)
                .find_map(|n| store.load(n, key).ok())
                .map(|g| g.sources)
        }
    }
    .and_then(|sources| rules::load_sources(sources).ok());
    let files = match from_generation {
        Some(files) => files,
        None => match rules::load_rules(config.rules.as_deref()) {
            Ok((files, _)) => files,
            Err(_) => return BTreeSet::new(),
        },
    };
    entries(&files)
}

pub struct RollbackOptions {
    pub config: PathBuf,
    pub to: Option<u64>,
}

/// Puts an earlier generation in force (default: the one before the current), after
/// checking it again.
pub fn rules_rollback(options: &RollbackOptions, out: &mut dyn Write) -> Result<u8, CommandError> {
    let (config, update) = load_update_config(&options.config)?;
    let key = update.key().map_err(CommandError::Usage)?;
    let store = Store::open(&update.state_dir)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", update.state_dir.display())))?;
    let _writer = store.lock()?;
    let mut state = store.state().map_err(CommandError::Usage)?;
    let current = store.current();
    let generations = store.generations();
    let target = match options.to {
        Some(n) if generations.contains(&n) => n,
        Some(n) => {
            return Err(CommandError::Usage(format!(
                "there is no generation {n} in {} (kept: {generations:?})",
                store.dir().display()
            )))
        }
        None => match current.and_then(|c| generations.iter().rev().find(|n| **n < c)) {
            Some(n) => *n,
            None => {
                return Err(CommandError::Usage(format!(
                    "no generation older than the current one ({current:?}) is kept in {}",
                    store.dir().display()
                )))
            }
        },
    };
    let generation = store.load(target, &key).map_err(CommandError::Usage)?;
    let version = generation.manifest.ruleset_version;
    rules::load_sources(generation.sources)
        .and_then(|files| RuleSet::compile(&files))
        .map_err(CommandError::Rules)?;
    store.switch(target)?;
    state.current = Some(Switch {
        generation: target,
        by: "rollback".into(),
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    });
    store.save_state(&state)?;
    writeln!(
        out,
        "Generation {target} (ruleset version {version}) is in force again{}. The next update replaces it only with a version newer than {}.",
        current.map_or_else(String::new, |c| format!(" instead of generation {c}")),
        state.high_water.get(key.id()).copied().unwrap_or(version)
    )?;
    if config.rules_poll_ms == 0 {
        writeln!(out, "The daemon does not watch its rules (rules_poll_ms: 0): reload it (systemctl reload telestrip).")?;
    }
    Ok(exit::OK)
}

/// Shows the generations kept, the one in force and how updates fared.
pub fn rules_status(config_path: &Path, out: &mut dyn Write) -> Result<u8, CommandError> {
    let (_, update) = load_update_config(config_path)?;
    let key = update.key().map_err(CommandError::Usage)?;
    let store = Store::at(&update.state_dir);
    let state = store.state().map_err(CommandError::Usage)?;
    writeln!(
        out,
        "Source {} (key {}), state in {}",
        update.source,
        key.id(),
        store.dir().display()
    )?;
    let current = store.current();
    let generations = store.generations();
    if generations.is_empty() {
        writeln!(out, "No generation yet: the daemon runs the configured `rules:` (or the bundled rules) until the first update is accepted.")?;
    }
    for number in generations.iter().rev() {
        let marker = if Some(*number) == current { "*" } else { " " };
        match store.load(*number, &key) {
            Ok(g) => writeln!(
                out,
                "{marker} generation {number}: ruleset version {}, accepted {}, expires {}, {} entries (+{} -{})",
                g.record.ruleset_version,
                g.record.accepted,
                g.record.expires,
                g.record.entries,
                g.record.added,
                g.record.removed
            )?,
            Err(e) => writeln!(out, "{marker} generation {number}: DAMAGED: {e}")?,
        }
    }
    let show = |t: u64| {
        if t == 0 {
            "never".to_string()
        } else {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(t))
                .to_string()
        }
    };
    writeln!(
        out,
        "Last attempt {}, last success {}, {} failure(s) in a row{}",
        show(state.last_attempt),
        show(state.last_success),
        state.consecutive_failures,
        state
            .last_error
            .as_ref()
            .map_or_else(String::new, |e| format!(": {e}"))
    )?;
    Ok(exit::OK)
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
