//! `telestrip rules import`: third-party lists in, one rule file out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{exit, CommandError};
use crate::rules::import::{self, ImportOptions, ImportedList, ListFormat};
use crate::rules::{self, Action, RuleSet, Source};

/// How many skipped lines are listed per reason before only the count is shown.
const SHOWN_PER_REASON: usize = 5;

pub struct ImportArgs {
    pub files: Vec<PathBuf>,
    /// `None`: detected per file.
    pub format: Option<ListFormat>,
    pub vendor: String,
    pub id: Option<String>,
    pub action: Action,
    pub category: String,
    pub source: Option<String>,
    pub subdomains: bool,
    /// YYYY-MM-DD; `None`: today (UTC).
    pub date: Option<String>,
    /// `None`: stdout.
    pub output: Option<PathBuf>,
    /// Write each list's names to `RULE-ID.list` beside the output (`domains_file`).
    pub list_files: bool,
}

/// Reads every list, writes one rule file (checked by loading it back), reports on `log`
/// what was imported and what was skipped and why.
pub fn rules_import(
    args: &ImportArgs,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<u8, CommandError> {
    let started = Instant::now();
    if args.files.len() > 1 && (args.id.is_some() || args.source.is_some()) {
        return Err(CommandError::Usage(
            "--id and --source name one list; import several lists one at a time or without them"
                .into(),
        ));
    }
    let date = match &args.date {
        Some(date) => {
            check_date(date)?;
            date.clone()
        }
        None => today(),
    };
    let mut yaml = format!(
        "# Written by `telestrip rules import` on {date}. Import the list again to update it;\n# edits to the entries below are lost then.\nvendor: {}\ndescription: Imported lists\nrules:\n",
        args.vendor
    );
    if args.list_files && args.output.is_none() {
        return Err(CommandError::Usage(
            "--list-files writes list files beside the rule file: give --output".into(),
        ));
    }
    let output_dir = args
        .output
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // (path, text) of each list file to write.
    let mut lists: Vec<(PathBuf, String)> = Vec::new();
    let mut entries = 0usize;
    for file in &args.files {
        let text = std::fs::read(file)
            .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", file.display())))?;
        let sha256: String = Sha256::digest(&text)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let text = String::from_utf8_lossy(&text);
        let format = args.format.unwrap_or_else(|| {
            let detected = ListFormat::detect(&text);
            let _ = writeln!(
                log,
                "{}: read as {} (detected; --format to choose)",
                file.display(),
                detected.as_str()
            );
            detected
        });
        let list = import::read_list(&text, format, args.subdomains);
        let options = ImportOptions {
            format,
            rule_id: args
                .id
                .clone()
                .unwrap_or_else(|| default_rule_id(&args.vendor, file)),
            action: args.action,
            category: args.category.clone(),
            source: args
                .source
                .clone()
                .unwrap_or_else(|| file.display().to_string()),
            date: date.clone(),
            subdomains: args.subdomains,
        };
        report_list(file, format, &list, log)?;
        if list.domains.is_empty() && list.cidrs.is_empty() {
            writeln!(
                log,
                "error: {}: no entries found when read as {}; is that the right --format?",
                file.display(),
                format.as_str()
            )?;
            return Ok(exit::ERROR);
        }
        entries += list.domains.len() + list.cidrs.len() + list.exceptions.len();
        if args.list_files {
            let list_name = format!("{}.list", options.rule_id);
            let mut text = format!(
                "# Written by `telestrip rules import` on {date} from {}: the entries of rule {}.\n",
                options.source, options.rule_id
            );
            import::write_rules_listed(&list, &options, &sha256, &mut yaml, &list_name, &mut text);
            lists.push((output_dir.join(list_name), text));
        } else {
            import::write_rules(&list, &options, &sha256, &mut yaml);
        }
    }
    // What is written must load: check it the way the daemon will.
    let shown = args
        .output
        .as_ref()
        .map_or("the imported rules".to_string(), |p| {
            p.display().to_string()
        });
    let mut sources = vec![Source {
        name: shown.clone(),
        text: yaml,
    }];
    sources.extend(lists.iter().map(|(path, text)| Source {
        name: path.display().to_string(),
        text: text.clone(),
    }));
    let loaded = rules::load_sources(sources).map_err(CommandError::Rules)?;
    let set = RuleSet::compile(&loaded).map_err(CommandError::Rules)?;
    let yaml = &loaded.first().map_or("", |f| f.text.as_str());
    // The lists first: a daemon that reloads in between never sees a rule without its list.
    for (path, text) in &lists {
        write_atomically(path, text.as_bytes())?;
    }
    match &args.output {
        Some(path) => write_atomically(path, yaml.as_bytes())?,
        None => out.write_all(yaml.as_bytes())?,
    }
    writeln!(
        log,
        "Wrote {entries} entries in {} rule(s) to {shown} in {:.0} ms (ruleset {}).",
        set.stats().rules,
        started.elapsed().as_secs_f64() * 1000.0,
        set.version()
    )?;
    Ok(exit::OK)
}

fn report_list(
    file: &Path,
    format: ListFormat,
    list: &ImportedList,
    log: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        log,
        "{}: {} lines as {}: {} names, {} CIDRs, {} exceptions; {} duplicates kept once, {} left out as covered by another entry's *. suffix, {} blank or comment lines, {} lines skipped.",
        file.display(),
        list.lines,
        format.as_str(),
        list.domains.len(),
        list.cidrs.len(),
        list.exceptions.len(),
        list.duplicates,
        list.covered,
        list.comments,
        list.skipped.len()
    )?;
    for adjusted in list.adjusted.iter().take(SHOWN_PER_REASON) {
        writeln!(
            log,
            "  note {}:{}: {}: {}",
            file.display(),
            adjusted.line,
            adjusted.reason,
            adjusted.text
        )?;
    }
    if list.adjusted.len() > SHOWN_PER_REASON {
        writeln!(
            log,
            "  ... and {} more lines imported in a corrected form",
            list.adjusted.len() - SHOWN_PER_REASON
        )?;
    }
    for (reason, count) in list.skipped_by_reason() {
        writeln!(log, "  skipped {count}: {reason}")?;
        let examples = list.skipped.iter().filter(|s| s.reason == reason);
        for skipped in examples.clone().take(SHOWN_PER_REASON) {
            writeln!(
                log,
                "    {}:{}: {}",
                file.display(),
                skipped.line,
                skipped.text
            )?;
        }
        if count > SHOWN_PER_REASON {
            writeln!(log, "    ... and {} more", count - SHOWN_PER_REASON)?;
        }
    }
    Ok(())
}

/// `<vendor>-<file stem>`, reduced to the characters a rule id may hold.
fn default_rule_id(vendor: &str, file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = format!("{vendor}-{stem}");
    id.chars().take(128).collect()
}

fn check_date(date: &str) -> Result<(), CommandError> {
    humantime::parse_rfc3339(&format!("{date}T00:00:00Z"))
        .map(|_| ())
        .map_err(|_| CommandError::Usage(format!("--date {date:?} is not a YYYY-MM-DD date")))
}

fn today() -> String {
    let now = crate::output::format_system_time(std::time::SystemTime::now());
    now.get(..10).unwrap_or(&now).to_string()
}

/// Writes through a temporary file renamed into place, so a daemon watching the rules
/// directory never reads half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CommandError> {
    crate::rulepack::store::write_atomically(path, bytes)
        .map_err(|e| CommandError::Usage(format!("cannot write {}: {e}", path.display())))
}
