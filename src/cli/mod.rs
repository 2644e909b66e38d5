//! The commands behind the CLI: each takes parsed options, does its job, and returns the
//! process exit code or a [`CommandError`] that `main` prints.

mod audit_cmd;
mod config_cmd;
mod import_cmd;
mod pcap;
mod rules_cmd;
mod rules_diff_cmd;
mod rules_pack;
mod rules_test_cmd;

pub use audit_cmd::{audit_verify, fleet_report, report, ReportFormat};
pub use config_cmd::{config_check, hash_password};
pub use import_cmd::{rules_import, ImportArgs};
pub use pcap::{run_pcap, PcapOptions};
pub use rules_cmd::{rules_check, rules_explain, ExplainOptions};
pub use rules_diff_cmd::rules_diff;
pub use rules_pack::{
    rules_publish, rules_rollback, rules_status, rules_update, PublishOptions, RollbackOptions,
    UpdateOptions,
};
pub use rules_test_cmd::{rules_test, RulesTestOptions};

use crate::rules::{self, LoadedFile, RuleErrors};

/// Exit codes shared by the commands.
pub mod exit {
    /// Nothing to report: no blocking rule matched, the rules are valid.
    pub const OK: u8 = 0;
    /// `pcap`: a blocking rule matched; `rules check`: the rules have problems.
    pub const FOUND: u8 = 1;
    /// Bad input (unreadable or corrupt file, bad arguments).
    pub const ERROR: u8 = 2;
    /// `pcap`: no telemetry found, but too much of the capture could not be judged to call
    /// it clean (the same code as a damaged input: neither is proof of a clean network).
    pub const INCOMPLETE: u8 = 2;
}

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the rules have errors, nothing was loaded:\n{0}")]
    Rules(RuleErrors),
    #[error("{0}")]
    Usage(String),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

pub use crate::rules::load_rules;

/// Where a rule is defined, as `file:line`.
pub(crate) fn rule_location(files: &[LoadedFile], rule: &rules::Rule) -> String {
    let file = files.iter().find(|f| f.name == *rule.file);
    match file.and_then(|f| f.line_of(&format!("id: {}", rule.id))) {
        Some(line) => format!("{}:{line}", rule.file),
        None => rule.file.to_string(),
    }
}
