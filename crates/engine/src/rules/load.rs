//! Reading rule files: from a directory, from in-memory sources (the bundled default), with
//! errors that name file, line and column.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::schema::{Action, DomainPattern, RuleFile};

/// A rule file's name (as shown in errors) and text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// A parsed and validated rule file.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub name: String,
    pub text: String,
    pub spec: RuleFile,
    /// The list files its rules name (`domains_file`), whose entries are in `spec` now:
    /// part of the ruleset's hash and of a published pack.
    pub lists: Vec<Source>,
}

/// The extension of list files (`domains_file`).
pub const LIST_EXTENSION: &str = "list";

/// Whether `name` is a list file's name (it ends in `.list`).
pub fn is_list_file(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e == LIST_EXTENSION)
}

impl LoadedFile {
    /// 1-based line of the test case `case` of rule `id`: the first line after the rule's
    /// `tests:` that mentions it.
    pub fn line_of_test_case(&self, id: &str, case: &str) -> Option<usize> {
        let mut in_tests = false;
        self.line_in_rule(id, |line| {
            in_tests |= line.trim_start().starts_with("tests:");
            in_tests && line.contains(case)
        })
    }

    /// 1-based line of the first line of rule `id`'s body for which `wanted` holds, or of
    /// the rule itself when none does.
    fn line_in_rule(&self, id: &str, mut wanted: impl FnMut(&str) -> bool) -> Option<usize> {
        let rule_line = self.line_of(&format!("id: {id}"))?;
        for (index, line) in self.text.lines().enumerate().skip(rule_line) {
            if line.trim_start().starts_with("- id:") {
                break;
            }
            if wanted(line) {
                return Some(index + 1);
            }
        }
        Some(rule_line)
    }

    /// 1-based line of the `must_keep_working` entry for `name` (normalised), as written
    /// (in any case, quoted or with a trailing dot).
    pub fn line_of_keep_working(&self, name: &str) -> Option<usize> {
        let list = self
            .text
            .lines()
            .position(|line| line.starts_with("must_keep_working:"))?;
        self.text
            .lines()
            .enumerate()
            .skip(list)
            .find(|(_, line)| names_entry(line, name))
            .map(|(i, _)| i + 1)
    }

    /// 1-based line of rule `id`'s `overrides_must_keep_working` entry for `name`
    /// (normalised), or of the rule when not found.
    pub fn line_of_keep_override(&self, id: &str, name: &str) -> Option<usize> {
        self.line_in_rule(id, |line| names_entry(line, name))
    }

    /// 1-based line of the first line containing `needle`, for errors found after parsing.
    pub fn line_of(&self, needle: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|line| line.contains(needle))
            .map(|i| i + 1)
    }
}

/// Whether `line` is a `name:` entry (`- name: X`, `name: X`, or flow style
/// `- {name: X, why: Y}` with the keys in any order) for `name` (normalised), written in
/// any case, quoted or with a trailing dot.
fn names_entry(line: &str, name: &str) -> bool {
    let entry = line.trim_start().trim_start_matches("- ").trim_start();
    let is_name = |key_value: &str| {
        key_value
            .trim_start()
            .strip_prefix("name:")
            .is_some_and(|value| {
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                value.trim_end_matches('.').eq_ignore_ascii_case(name)
            })
    };
    match entry.strip_prefix('{') {
        Some(flow) => flow.split(['}', ',']).any(is_name),
        None => is_name(entry),
    }
}

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found; a ruleset with any of them is not loaded at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleErrors(pub Vec<RuleError>);

impl RuleErrors {
    pub fn single(file: &str, message: &str) -> Self {
        RuleErrors(vec![RuleError {
            file: file.to_string(),
            line: None,
            column: None,
            message: message.to_string(),
        }])
    }
}

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleErrors {}

/// The rule files shipped inside the binary (the `rules/` directory at build time).
pub fn bundled_sources() -> Vec<Source> {
    BUNDLED
        .iter()
        .map(|(name, text)| Source {
            name: name.to_string(),
            text: text.to_string(),
        })
        .collect()
}

/// Every file of `rules/`, in the order `load_dir` reads them (sorted by name).
pub(crate) const BUNDLED: &[(&str, &str)] = &[
    (
        "rules/adobe.yaml",
        include_str!("../../../../rules/adobe.yaml"),
    ),
    (
        "rules/apple.yaml",
        include_str!("../../../../rules/apple.yaml"),
    ),
    (
        "rules/canonical.yaml",
        include_str!("../../../../rules/canonical.yaml"),
    ),
    ("rules/doh.yaml", include_str!("../../../../rules/doh.yaml")),
    (
        "rules/google.yaml",
        include_str!("../../../../rules/google.yaml"),
    ),
    (
        "rules/microsoft.yaml",
        include_str!("../../../../rules/microsoft.yaml"),
    ),
    (
        "rules/mozilla.yaml",
        include_str!("../../../../rules/mozilla.yaml"),
    ),
    (
        "rules/nvidia.yaml",
        include_str!("../../../../rules/nvidia.yaml"),
    ),
];

/// Loads every `*.yaml` / `*.yml` file of a directory (not recursive, sorted by name, hidden
/// names such as editors' `.#x.yaml` locks left out), or a single file when `path` is a
/// file. A rule file that cannot be read (a dangling link, a directory, a FIFO) is an error
/// like a rule with a mistake: the rules are never loaded in part.
pub fn load_dir(path: &Path) -> Result<Vec<LoadedFile>, RuleErrors> {
    let shown = path.display().to_string();
    let metadata = std::fs::metadata(path)
        .map_err(|e| RuleErrors::single(&shown, &format!("cannot read: {e}")))?;
    let mut paths = Vec::new();
    let mut unreadable = Vec::new();
    if metadata.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| RuleErrors::single(&shown, &format!("cannot list directory: {e}")))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| RuleErrors::single(&shown, &format!("cannot list directory: {e}")))?;
            let file = entry.path();
            let is_yaml = matches!(
                file.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | LIST_EXTENSION)
            );
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !is_yaml || hidden {
                continue;
            }
            match std::fs::metadata(&file) {
                Ok(m) if m.is_file() => paths.push(file),
                Ok(_) => unreadable.push(RuleError {
                    file: file.display().to_string(),
                    line: None,
                    column: None,
                    message: "not a regular file".into(),
                }),
                Err(e) => unreadable.push(RuleError {
                    file: file.display().to_string(),
                    line: None,
                    column: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        paths.sort();
        if !unreadable.is_empty() {
            return Err(RuleErrors(unreadable));
        }
        if !paths
            .iter()
            .any(|p| !is_list_file(&p.display().to_string()))
        {
            return Err(RuleErrors::single(
                &shown,
                "no rule files (*.yaml, *.yml) in this directory",
            ));
        }
    } else {
        paths.push(path.to_path_buf());
    }
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for file in paths {
        let name = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => sources.push(Source { name, text }),
            Err(e) => errors.push(RuleError {
                file: name,
                line: None,
                column: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    match load_sources(sources) {
        Ok(files) if errors.is_empty() => Ok(files),
        Ok(_) => Err(RuleErrors(errors)),
        Err(RuleErrors(more)) => {
            errors.extend(more);
            Err(RuleErrors(errors))
        }
    }
}

/// Parses and validates rule files; collects every error of every file. Sources whose name
/// ends in `.list` are list files, read where a rule of a file in the same directory names
/// them (`domains_file`).
pub fn load_sources(sources: Vec<Source>) -> Result<Vec<LoadedFile>, RuleErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    let (lists, sources): (Vec<Source>, Vec<Source>) =
        sources.into_iter().partition(|s| is_list_file(&s.name));
    for source in sources {
        match serde_yaml::from_str::<RuleFile>(&source.text) {
            Ok(spec) => files.push(LoadedFile {
                name: source.name,
                text: source.text,
                spec,
                lists: Vec::new(),
            }),
            Err(error) => errors.push(yaml_error(&source.name, &error)),
        }
    }
    for file in &mut files {
        errors.extend(attach_lists(file, &lists));
    }
    errors.extend(validate(&files));
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(RuleErrors(errors))
    }
}

/// A serde_yaml error as `file:line:column: message` (also used for the daemon's config).
pub fn yaml_error(file: &str, error: &serde_yaml::Error) -> RuleError {
    let text = error.to_string();
    // serde_yaml appends " at line L column C"; the location goes in front instead.
    let message = match text.find(" at line ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_string(),
        None => text,
    };
    RuleError {
        file: file.to_string(),
        line: error.location().map(|l| l.line()),
        column: error.location().map(|l| l.column()),
        message,
    }
}

/// Reads the list files the rules of `file` name into their `domains`; errors name the
/// list's line.
fn attach_lists(file: &mut LoadedFile, lists: &[Source]) -> Vec<RuleError> {
    let mut errors = Vec::new();
    let dir = Path::new(&file.name).parent().unwrap_or(Path::new(""));
    for index in 0..file.spec.rules.len() {
        let Some(list_name) = file
            .spec
            .rules
            .get(index)
            .and_then(|r| r.domains_file.clone())
        else {
            continue;
        };
        let id = file.spec.rules.get(index).map_or("", |r| r.id.0.as_str());
        let line = file.line_of(&format!("id: {id}"));
        let plain = !list_name.is_empty()
            && !list_name.starts_with('.')
            && !list_name.contains(['/', '\\'])
            && is_list_file(&list_name);
        if !plain {
            errors.push(RuleError {
                file: file.name.clone(),
                line,
                column: None,
                message: format!(
                    "rule {id}: domains_file {list_name:?} must be the name of a .list file \
                     in the same directory (no path)"
                ),
            });
            continue;
        }
        let wanted = dir.join(&list_name);
        let Some(list) = lists.iter().find(|l| Path::new(&l.name) == wanted) else {
            errors.push(RuleError {
                file: file.name.clone(),
                line,
                column: None,
                message: format!(
                    "rule {id}: domains_file {} not found{}",
                    wanted.display(),
                    if lists.is_empty() && dir.as_os_str().is_empty() {
                        " (list files are read from a rule directory)"
                    } else {
                        ""
                    }
                ),
            });
            continue;
        };
        let mut patterns = Vec::new();
        for (number, raw) in list.text.lines().enumerate() {
            let entry = raw.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            match DomainPattern::parse(entry) {
                Ok(pattern) => patterns.push(pattern),
                Err(message) => errors.push(RuleError {
                    file: list.name.clone(),
                    line: Some(number + 1),
                    column: None,
                    message,
                }),
            }
        }
        if let Some(rule) = file.spec.rules.get_mut(index) {
            rule.domains.extend(patterns);
        }
        if !file.lists.iter().any(|l| l.name == list.name) {
            file.lists.push(list.clone());
        }
    }
    errors
}

/// Checks that span rules or files: a rule that matches nothing, duplicate ids.
fn validate(files: &[LoadedFile]) -> Vec<RuleError> {
    let mut errors = Vec::new();
    let mut first_seen: HashMap<&str, (&str, Option<usize>)> = HashMap::new();
    for file in files {
        if file.spec.rules.is_empty() && file.spec.must_keep_working.is_empty() {
            errors.push(RuleError {
                file: file.name.clone(),
                line: file.line_of("rules:"),
                column: None,
                message: "the file has no rules and no must_keep_working names".to_string(),
            });
        }
        for rule in &file.spec.rules {
            let id = rule.id.0.as_str();
            let line = file.line_of(&format!("id: {id}"));
            if rule.domains.is_empty() && rule.cidrs.is_empty() {
                errors.push(RuleError {
                    file: file.name.clone(),
                    line,
                    column: None,
                    message: format!(
                        "rule {id} has neither domains nor cidrs, so it matches nothing"
                    ),
                });
            }
            if rule.profile.is_some() && rule.action != Action::Allow {
                errors.push(RuleError {
                    file: file.name.clone(),
                    line,
                    column: None,
                    message: format!(
                        "rule {id} has a profile, so it must be an allow rule (a profile re-opens \
                         what other rules block; it is {})",
                        rule.action
                    ),
                });
            }
            if let Some((other_file, other_line)) = first_seen.get(id) {
                let place = match other_line {
                    Some(l) => format!("{other_file}:{l}"),
                    None => other_file.to_string(),
                };
                errors.push(RuleError {
                    file: file.name.clone(),
                    line,
                    column: None,
                    message: format!("duplicate rule id {id} (first defined at {place})"),
                });
            } else {
                first_seen.insert(id, (file.name.as_str(), line));
            }
        }
    }
    errors
}
