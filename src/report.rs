//! `telestrip report`: what a compliance officer files for a period. Reads audit logs
//! (verifying their chain), and says per vendor and rule what was blocked, only logged or
//! allowed, when it was first and last seen, which rulesets were in force, and whether the
//! filter ran the whole time; as text, JSON or a standalone HTML page.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub mod fleet;
pub mod prometheus;

pub use prometheus::{CheckRow, PrometheusCheck};

use crate::audit::{self, AuditEvent, Record};
use crate::html::{bar_chart, escape, STYLE};
use crate::output::format_system_time;

/// Parses `2026-11-01` (midnight UTC) or an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    humantime::parse_rfc3339_weak(full.trim_end_matches('Z'))
        .map_err(|e| format!("{text:?} is not a date (2026-11-01) or an RFC 3339 time: {e}"))
}

/// The period a report covers; open ends take the log's first or last record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Period {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl Period {
    fn contains(&self, time: SystemTime) -> bool {
        self.since.is_none_or(|s| time >= s) && self.until.is_none_or(|u| time < u)
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// The gateway and site its start, heartbeat and stop records name (the last named).
    pub gateway: Option<String>,
    pub site: Option<String>,
    pub since: String,
    pub until: String,
    pub generated: String,
    pub files: Vec<String>,
    pub chain: Chain,
    pub vendors: Vec<VendorTotals>,
    pub rules: Vec<RuleRow>,
    pub rulesets: Vec<RulesetPeriod>,
    /// Signed rule packs put in force in the period (updates, rollbacks, fallbacks).
    pub rule_updates: Vec<RuleUpdate>,
    pub runs: Vec<Run>,
    /// Share of the period the filter was running (0 to 1), from its runs.
    pub coverage: f64,
    /// Matched flows the daemon could not write (its writer fell behind): not in the rows.
    pub events_dropped: u64,
    /// Attempts to get around the filter in the period, by kind, from the counters in the
    /// heartbeat and stop records (so up to each run's last such record).
    pub bypass_attempts: BTreeMap<String, u64>,
    /// Blocked flows per day of the period (UTC dates).
    pub blocked_per_day: Vec<(String, u64)>,
    /// The gateway's own counters for the period, when a Prometheus server was given.
    pub prometheus: Option<PrometheusCheck>,
    /// Matched flows per client group (`clients:` in the config).
    pub groups: Vec<GroupTotals>,
    /// Flows a service profile's allow rule let pass, per profile and rule.
    pub profiles: Vec<ProfileRow>,
    /// The clients (pseudonymised when the log is) with the most telemetry attempts, most
    /// first: a misconfigured device stands out here.
    pub top_clients: Vec<ClientRow>,
    /// The pseudonymisation keys the period's flow records were made with, and whether
    /// each was reported compromised (in any record of the logs read).
    pub key_epochs: Vec<KeyEpochRow>,
    #[serde(skip)]
    pub(crate) period: (SystemTime, SystemTime),
    /// When the filter ran and enforced (runs in dry run and silences left out), clipped to
    /// the period: a site is covered while one of its gateways is.
    #[serde(skip)]
    pub(crate) enforcing: Vec<(SystemTime, SystemTime)>,
}

#[derive(Debug, Serialize)]
pub struct Chain {
    pub verified: bool,
    pub records: u64,
    pub first_record: Option<u64>,
    pub last_record: Option<u64>,
    /// The hash of the last valid record: compare it with the head the daemon logged.
    pub head: Option<String>,
    pub broken: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Serialize, Clone)]
pub struct VendorTotals {
    pub vendor: String,
    pub blocked: u64,
    pub logged: u64,
    pub allowed: u64,
}

impl Report {
    /// Whether the log names client groups other than the default one: only then are
    /// the flows per group worth a table.
    fn has_client_groups(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.group != crate::clients::DEFAULT_GROUP)
    }
}

/// Matched flows of one client group.
#[derive(Debug, Default, Serialize, Clone)]
pub struct GroupTotals {
    pub group: String,
    pub blocked: u64,
    pub logged: u64,
    pub allowed: u64,
    /// Flows that matched a blocking rule, whether blocked or (in dry run) only logged.
    pub telemetry_attempts: u64,
}

/// Flows one service profile let pass through one of its rules.
#[derive(Debug, Default, Serialize, Clone)]
pub struct ProfileRow {
    pub profile: String,
    pub vendor: String,
    pub rule: String,
    pub flows: u64,
}

/// One client's telemetry attempts.
#[derive(Debug, Default, Serialize, Clone)]
pub struct ClientRow {
    /// The address as the log has it (`p:...` when pseudonymised).
    pub client: String,
    pub group: String,
    pub telemetry_attempts: u64,
    /// The vendor the client sent most attempts to.
    pub top_vendor: String,
    pub last_seen: String,
    /// The key the pseudonym was made with, when reported compromised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compromised_key_epoch: Option<String>,
}

/// Flow records of the period pseudonymised with one key.
#[derive(Debug, Default, Serialize, Clone)]
pub struct KeyEpochRow {
    pub key_epoch: String,
    pub flows: u64,
    /// Distinct pseudonyms (a client's pseudonym changes with the key).
    pub clients: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// When a record first listed the key as compromised: its pseudonyms identify clients.
    pub compromised_since: Option<String>,
}

/// How many clients the report lists.
pub const TOP_CLIENTS: usize = 10;
/// Distinct pseudonyms counted per key epoch; beyond it the count stops growing (a
/// bounded table, whatever the log holds).
const MAX_TRACKED_CLIENTS: usize = 1_000_000;

#[derive(Debug, Default, Serialize, Clone)]
pub struct RuleRow {
    pub vendor: String,
    pub rule: String,
    pub blocked: u64,
    pub logged: u64,
    pub allowed: u64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct RulesetPeriod {
    pub ruleset: String,
    pub sha256: String,
    pub from: String,
    pub until: String,
}

/// One run of the daemon, from its start record to its stop record (or its last record).
#[derive(Debug, Serialize, Clone)]
pub struct Run {
    pub started: String,
    pub ended: String,
    /// True with a stop record; false: killed, crashed, or still running.
    pub stopped_cleanly: bool,
    pub enforce: bool,
    pub fail: String,
    /// Silences longer than two heartbeats within the run.
    pub silences: Vec<String>,
}

/// A signed rule pack put in force (`rules_update` records, each switch counted once).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleUpdate {
    /// When it was put in force (the switch of `current`; the acceptance for a fallback).
    pub time: String,
    /// `update`, `rollback` or `fallback`.
    pub how: String,
    pub generation: u64,
    pub ruleset_version: u64,
    pub previous_version: Option<u64>,
    pub key_id: String,
    pub source: String,
    pub expires: String,
    pub added: usize,
    pub removed: usize,
}

/// One line for a rule update, the same in text and HTML.
pub(crate) fn describe_update(u: &RuleUpdate) -> String {
    let from = u
        .previous_version
        .map_or_else(String::new, |v| format!(" (was {v})"));
    format!(
        "{} {}: ruleset version {}{from}, generation {}, key {}, from {}: {} entries added, {} removed; valid until {}",
        u.time, u.how, u.ruleset_version, u.generation, u.key_id, u.source, u.added, u.removed, u.expires
    )
}

/// Accumulates records into a report.
struct Builder {
    period: Period,
    gateway: Option<String>,
    site: Option<String>,
    rules: BTreeMap<(String, String), RuleRow>,
    rulesets: Vec<RulesetPeriod>,
    rule_updates: Vec<RuleUpdate>,
    runs: Vec<RunState>,
    per_day: BTreeMap<String, u64>,
    groups: BTreeMap<String, GroupTotals>,
    profiles: BTreeMap<(String, String, String), u64>,
    /// Per client: group, attempts per vendor, last seen.
    clients: HashMap<String, ClientState>,
    /// Per key epoch: flows in the period and their pseudonyms.
    epochs: BTreeMap<String, EpochState>,
    /// Key epochs reported compromised, with the time of the first record saying so.
    compromised: BTreeMap<String, String>,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
}

#[derive(Default)]
struct EpochState {
    flows: u64,
    clients: std::collections::HashSet<String>,
    first_seen: String,
    last_seen: String,
}

#[derive(Default)]
struct ClientState {
    key_epoch: Option<String>,
    group: String,
    per_vendor: BTreeMap<String, u64>,
    last_seen: String,
}

struct RunState {
    started: SystemTime,
    last: SystemTime,
    stopped: bool,
    enforce: bool,
    fail: String,
    heartbeat: Duration,
    events_dropped: u64,
    silences: Vec<(SystemTime, SystemTime)>,
    /// The run's bypass counters at its last record before the period and its last record
    /// in the period.
    bypass_before: BTreeMap<String, u64>,
    bypass_last: BTreeMap<String, u64>,
}

impl RunState {
    fn bypass_counters(
        &mut self,
        period: &Period,
        time: SystemTime,
        counts: &BTreeMap<String, u64>,
    ) {
        if period.since.is_some_and(|since| time < since) {
            self.bypass_before = counts.clone();
        } else if period.contains(time) {
            self.bypass_last = counts.clone();
        }
    }
}

impl Builder {
    fn new(period: Period) -> Self {
        Self {
            period,
            gateway: None,
            site: None,
            rules: BTreeMap::new(),
            rulesets: Vec::new(),
            rule_updates: Vec::new(),
            runs: Vec::new(),
            per_day: BTreeMap::new(),
            groups: BTreeMap::new(),
            profiles: BTreeMap::new(),
            clients: HashMap::new(),
            epochs: BTreeMap::new(),
            compromised: BTreeMap::new(),
            first: None,
            last: None,
        }
    }

    fn ruleset_from(&mut self, ruleset: &str, sha256: &str, time: &str) {
        if let Some(open) = self.rulesets.last_mut() {
            if open.sha256 == sha256 {
                return;
            }
            open.until = time.to_string();
        }
        self.rulesets.push(RulesetPeriod {
            ruleset: ruleset.to_string(),
            sha256: sha256.to_string(),
            from: time.to_string(),
            until: String::new(),
        });
    }

    fn add(&mut self, record: &Record) {
        let Ok(time) = humantime::parse_rfc3339(&record.time) else {
            return;
        };
        if let AuditEvent::Start { gateway, site, .. }
        | AuditEvent::Heartbeat { gateway, site, .. }
        | AuditEvent::Stop { gateway, site, .. } = &record.event
        {
            if gateway.is_some() {
                self.gateway.clone_from(gateway);
                self.site.clone_from(site);
            }
        }
        if let AuditEvent::Start {
            compromised_key_epochs,
            ..
        }
        | AuditEvent::PseudonymKey {
            compromised_key_epochs,
            ..
        } = &record.event
        {
            for epoch in compromised_key_epochs {
                self.compromised
                    .entry(epoch.clone())
                    .or_insert_with(|| record.time.clone());
            }
        }
        // Runs and rulesets are followed over the whole log, so the state at the start of
        // the period is known; flows count only inside it.
        match &record.event {
            AuditEvent::PseudonymKey { .. } => {}
            AuditEvent::Start {
                ruleset,
                sha256,
                enforce,
                fail,
                heartbeat_seconds,
                ..
            } => {
                self.runs.push(RunState {
                    started: time,
                    last: time,
                    stopped: false,
                    enforce: *enforce,
                    fail: fail.clone(),
                    heartbeat: Duration::from_secs((*heartbeat_seconds).max(1)),
                    events_dropped: 0,
                    silences: Vec::new(),
                    bypass_before: BTreeMap::new(),
                    bypass_last: BTreeMap::new(),
                });
                self.ruleset_from(ruleset, sha256, &record.time);
            }
            AuditEvent::Reload {
                ok: true,
                ruleset,
                sha256,
                ..
            } => self.ruleset_from(ruleset, sha256, &record.time),
            AuditEvent::Heartbeat {
                events_dropped,
                bypass,
                ..
            } => {
                if let Some(run) = self.runs.last_mut() {
                    run.events_dropped = *events_dropped;
                    run.bypass_counters(&self.period, time, bypass);
                }
            }
            AuditEvent::Stop {
                events_dropped,
                bypass,
                ..
            } => {
                if let Some(run) = self.runs.last_mut() {
                    run.events_dropped = *events_dropped;
                    run.stopped = true;
                    run.bypass_counters(&self.period, time, bypass);
                }
            }
            AuditEvent::Reload { .. } => {}
            AuditEvent::RulesUpdate {
                generation,
                ruleset_version,
                previous_version,
                key_id,
                source,
                expires,
                accepted,
                switched,
                switched_by,
                added,
                removed,
                ..
            } => {
                let when = switched.as_deref().unwrap_or(accepted);
                let in_period =
                    humantime::parse_rfc3339(when).is_ok_and(|t| self.period.contains(t));
                let seen = self.rule_updates.iter().any(|u| {
                    u.generation == *generation && u.time == when && u.how == *switched_by
                });
                if in_period && !seen {
                    self.rule_updates.push(RuleUpdate {
                        time: when.to_string(),
                        how: switched_by.clone(),
                        generation: *generation,
                        ruleset_version: *ruleset_version,
                        previous_version: *previous_version,
                        key_id: key_id.clone(),
                        source: source.clone(),
                        expires: expires.clone(),
                        added: *added,
                        removed: *removed,
                    });
                }
            }
            AuditEvent::Flow {
                rule,
                vendor,
                action,
                rule_action,
                client,
                group,
                profile,
                key_epoch,
                ..
            } if self.period.contains(time) => {
                if let Some(epoch) = key_epoch {
                    let state = self.epochs.entry(epoch.clone()).or_default();
                    state.flows += 1;
                    if state.clients.len() < MAX_TRACKED_CLIENTS {
                        state.clients.insert(client.clone());
                    }
                    if state.first_seen.is_empty() {
                        state.first_seen.clone_from(&record.time);
                    }
                    state.last_seen.clone_from(&record.time);
                }
                let attempt = matches!(rule_action.as_str(), "drop" | "reject");
                let totals = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| GroupTotals {
                        group: group.clone(),
                        ..GroupTotals::default()
                    });
                match action.as_str() {
                    "drop" | "reject" => totals.blocked += 1,
                    "log" => totals.logged += 1,
                    _ => totals.allowed += 1,
                }
                if attempt {
                    totals.telemetry_attempts += 1;
                    let state = self.clients.entry(client.clone()).or_default();
                    state.group.clone_from(group);
                    state.key_epoch.clone_from(key_epoch);
                    *state.per_vendor.entry(vendor.clone()).or_default() += 1;
                    state.last_seen.clone_from(&record.time);
                }
                if let Some(profile) = profile {
                    *self
                        .profiles
                        .entry((profile.clone(), vendor.clone(), rule.clone()))
                        .or_default() += 1;
                }
                let row = self
                    .rules
                    .entry((vendor.clone(), rule.clone()))
                    .or_insert_with(|| RuleRow {
                        vendor: vendor.clone(),
                        rule: rule.clone(),
                        first_seen: record.time.clone(),
                        ..RuleRow::default()
                    });
                row.last_seen = record.time.clone();
                match action.as_str() {
                    "drop" | "reject" => {
                        row.blocked += 1;
                        let day = record.time.get(..10).unwrap_or_default().to_string();
                        *self.per_day.entry(day).or_default() += 1;
                    }
                    "log" => row.logged += 1,
                    _ => row.allowed += 1,
                }
            }
            AuditEvent::Flow { .. } => {}
        }
        if let Some(run) = self.runs.last_mut() {
            if time.duration_since(run.last).unwrap_or_default() > run.heartbeat * 2 {
                run.silences.push((run.last, time));
            }
            run.last = time;
        }
        self.first.get_or_insert(time);
        self.last = Some(time);
    }

    fn finish(mut self, files: &[PathBuf], verification: &audit::Verification) -> Report {
        let since = self
            .period
            .since
            .or(self.first)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let until = self.period.until.or(self.last).unwrap_or(since);
        let clip = |t: SystemTime| t.clamp(since, until.max(since));
        // When the filter ran: each run's time in the period without its silences.
        let spans: Vec<(bool, SystemTime, SystemTime)> = self
            .runs
            .iter()
            .flat_map(|run| {
                let mut pieces = Vec::new();
                let mut from = clip(run.started);
                for (a, b) in &run.silences {
                    if clip(*a) > from {
                        pieces.push((run.enforce, from, clip(*a)));
                    }
                    from = from.max(clip(*b));
                }
                if clip(run.last) > from {
                    pieces.push((run.enforce, from, clip(run.last)));
                }
                pieces
            })
            .collect();
        let covered: Duration = spans
            .iter()
            .map(|(_, from, to)| to.duration_since(*from).unwrap_or_default())
            .sum();
        let length = until.duration_since(since).unwrap_or_default();
        let coverage = if length.is_zero() {
            if self.runs.is_empty() {
                0.0
            } else {
                1.0
            }
        } else {
            (covered.as_secs_f64() / length.as_secs_f64()).min(1.0)
        };
        if let Some(open) = self.rulesets.last_mut() {
            open.until = self.last.map(format_system_time).unwrap_or_default();
        }
        let in_period = |r: &RulesetPeriod| {
            let from = humantime::parse_rfc3339(&r.from).unwrap_or(since);
            let to = humantime::parse_rfc3339(&r.until).unwrap_or(until);
            to >= since && from < until
        };
        self.rulesets.retain(in_period);
        let mut vendors: BTreeMap<String, VendorTotals> = BTreeMap::new();
        for row in self.rules.values() {
            let v = vendors
                .entry(row.vendor.clone())
                .or_insert_with(|| VendorTotals {
                    vendor: row.vendor.clone(),
                    ..VendorTotals::default()
                });
            v.blocked += row.blocked;
            v.logged += row.logged;
            v.allowed += row.allowed;
        }
        let runs = self
            .runs
            .iter()
            .filter(|run| run.last >= since && run.started < until)
            .map(|run| Run {
                started: format_system_time(run.started),
                ended: format_system_time(run.last),
                stopped_cleanly: run.stopped,
                enforce: run.enforce,
                fail: run.fail.clone(),
                silences: run
                    .silences
                    .iter()
                    .map(|(a, b)| {
                        format!("{} to {}", format_system_time(*a), format_system_time(*b))
                    })
                    .collect(),
            })
            .collect();
        let enforcing = spans
            .iter()
            .filter(|(enforce, _, _)| *enforce)
            .map(|(_, from, to)| (*from, *to))
            .collect();
        Report {
            gateway: self.gateway,
            site: self.site,
            since: format_system_time(since),
            until: format_system_time(until),
            generated: format_system_time(SystemTime::now()),
            files: files.iter().map(|f| f.display().to_string()).collect(),
            chain: Chain {
                verified: verification.ok(),
                records: verification.records,
                first_record: verification.first.as_ref().map(|f| f.0),
                last_record: verification.last.as_ref().map(|l| l.0),
                head: verification.last.as_ref().map(|l| l.1.clone()),
                broken: verification.broken.as_ref().map(ToString::to_string),
                warnings: verification.warnings.clone(),
            },
            vendors: vendors.into_values().collect(),
            rules: self.rules.into_values().collect(),
            rulesets: self.rulesets,
            rule_updates: self.rule_updates,
            runs,
            coverage,
            events_dropped: self.runs.iter().map(|r| r.events_dropped).sum(),
            bypass_attempts: bypass_in_period(&self.runs),
            blocked_per_day: self.per_day.into_iter().collect(),
            prometheus: None,
            groups: self.groups.into_values().collect(),
            profiles: self
                .profiles
                .into_iter()
                .map(|((profile, vendor, rule), flows)| ProfileRow {
                    profile,
                    vendor,
                    rule,
                    flows,
                })
                .collect(),
            top_clients: top_clients(self.clients, &self.compromised),
            key_epochs: self
                .epochs
                .into_iter()
                .map(|(key_epoch, state)| KeyEpochRow {
                    compromised_since: self.compromised.get(&key_epoch).cloned(),
                    key_epoch,
                    flows: state.flows,
                    clients: state.clients.len() as u64,
                    first_seen: state.first_seen,
                    last_seen: state.last_seen,
                })
                .collect(),
            period: (since, until),
            enforcing,
        }
    }
}

/// The [`TOP_CLIENTS`] clients with the most telemetry attempts, most first (ties by
/// address, so the list is the same for the same log).
fn top_clients(
    clients: HashMap<String, ClientState>,
    compromised: &BTreeMap<String, String>,
) -> Vec<ClientRow> {
    let mut rows: Vec<ClientRow> = clients
        .into_iter()
        .map(|(client, state)| {
            let top_vendor = state
                .per_vendor
                .iter()
                .max_by_key(|(vendor, count)| (**count, std::cmp::Reverse(*vendor)))
                .map(|(vendor, _)| vendor.clone())
                .unwrap_or_default();
            ClientRow {
                client,
                compromised_key_epoch: state
                    .key_epoch
                    .filter(|epoch| compromised.contains_key(epoch)),
                group: state.group,
                telemetry_attempts: state.per_vendor.values().sum(),
                top_vendor,
                last_seen: state.last_seen,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.telemetry_attempts
            .cmp(&a.telemetry_attempts)
            .then_with(|| a.client.cmp(&b.client))
    });
    rows.truncate(TOP_CLIENTS);
    rows
}

/// Bypass attempts counted in the period: per run, its last counters in the period less
/// those it had before the period (counters start at zero with each run).
fn bypass_in_period(runs: &[RunState]) -> BTreeMap<String, u64> {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for run in runs {
        for (kind, last) in &run.bypass_last {
            let before = run.bypass_before.get(kind).copied().unwrap_or(0);
            *total.entry(kind.clone()).or_default() += last.saturating_sub(before);
        }
    }
    total.retain(|_, count| *count > 0);
    total
}

/// The bypass attempts as one line: `3 doh, 1 ech`, or `none`.
fn bypass_text(report: &Report) -> String {
    crate::output::counts_text(report.bypass_attempts.iter().map(|(k, n)| (k.as_str(), *n)))
}

/// Adds the cross-check with the Prometheus server at `url` (counters matching `selector`).
pub fn check_prometheus(report: &mut Report, url: &str, selector: &str) {
    let (since, until) = report.period;
    let mut check = PrometheusCheck {
        url: url.to_string(),
        selector: selector.to_string(),
        approximate: false,
        rows: Vec::new(),
        error: None,
    };
    match prometheus::counts(url, selector, since, until) {
        Ok((counts, approximate)) => {
            check.approximate = approximate;
            let mut keys: Vec<(String, String)> = counts.keys().cloned().collect();
            keys.extend(
                report
                    .rules
                    .iter()
                    .map(|r| (r.vendor.clone(), r.rule.clone())),
            );
            keys.sort();
            keys.dedup();
            for (vendor, rule) in keys {
                let audit = report
                    .rules
                    .iter()
                    .find(|r| r.vendor == vendor && r.rule == rule);
                let counted = counts
                    .get(&(vendor.clone(), rule.clone()))
                    .copied()
                    .unwrap_or_default();
                let row = CheckRow {
                    audit_blocked: audit.map_or(0, |r| r.blocked),
                    prometheus_blocked: counted[0],
                    audit_logged: audit.map_or(0, |r| r.logged),
                    prometheus_logged: counted[1],
                    vendor,
                    rule,
                };
                // Rules that matched nothing either way are noise.
                if row.audit_blocked
                    + row.prometheus_blocked
                    + row.audit_logged
                    + row.prometheus_logged
                    > 0
                {
                    check.rows.push(row);
                }
            }
        }
        Err(error) => check.error = Some(error),
    }
    report.prometheus = Some(check);
}

/// Builds the report for `period` from audit logs given oldest first.
pub fn build(files: &[PathBuf], period: Period) -> std::io::Result<Report> {
    let mut builder = Builder::new(period);
    let verification = audit::verify(files, |record| builder.add(record))?;
    Ok(builder.finish(files, &verification))
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "telestrip report: {} to {}",
        report.since, report.until
    );
    let _ = writeln!(out, "Audit logs: {}", report.files.join(", "));
    let chain = &report.chain;
    if chain.verified {
        let _ = writeln!(
            out,
            "Audit chain: VERIFIED, {} records ({} to {}), head {}",
            chain.records,
            chain.first_record.unwrap_or(0),
            chain.last_record.unwrap_or(0),
            chain.head.as_deref().unwrap_or("-")
        );
    } else {
        let _ = writeln!(
            out,
            "Audit chain: BROKEN at {}; the report covers only the {} records before it",
            chain.broken.as_deref().unwrap_or("?"),
            chain.records
        );
    }
    for warning in &chain.warnings {
        let _ = writeln!(out, "  note: {warning}");
    }
    let _ = writeln!(
        out,
        "Filter running: {:.1}% of the period, {} run(s)",
        report.coverage * 100.0,
        report.runs.len()
    );
    for run in &report.runs {
        let _ = writeln!(
            out,
            "  {} to {}: {}, fail {}, {}",
            run.started,
            run.ended,
            if run.enforce {
                "enforcing"
            } else {
                "DRY RUN (only logged)"
            },
            run.fail,
            if run.stopped_cleanly {
                "stopped cleanly"
            } else {
                "no stop record (killed, crashed or still running)"
            }
        );
        for silence in &run.silences {
            let _ = writeln!(out, "    silent (no record, no heartbeat): {silence}");
        }
    }
    let _ = writeln!(out, "Rulesets in force:");
    for r in &report.rulesets {
        let _ = writeln!(
            out,
            "  {} (sha256 {}) from {} to {}",
            r.ruleset, r.sha256, r.from, r.until
        );
    }
    if !report.rule_updates.is_empty() {
        let _ = writeln!(out, "Signed rule updates:");
        for u in &report.rule_updates {
            let _ = writeln!(out, "  {}", describe_update(u));
        }
    }
    if report.events_dropped > 0 {
        let _ = writeln!(
            out,
            "WARNING: {} matched flows were not written (the writer fell behind); they are not counted below",
            report.events_dropped
        );
    }
    let _ = writeln!(
        out,
        "Attempts to get around the filter: {} (telemetry over QUIC, real ECH, DoH resolvers, HTTPS/SVCB queries for blocked names, flows blocked by a learned address)",
        bypass_text(report)
    );
    if let Some(check) = &report.prometheus {
        let _ = writeln!(out, "\nCross-check with Prometheus at {}:", check.url);
        match &check.error {
            Some(error) => {
                let _ = writeln!(out, "  not possible: {error}");
            }
            None => {
                if check.approximate {
                    let _ = writeln!(out, "  (approximate: telestrip restarted in the period, Prometheus extrapolates)");
                }
                let _ = writeln!(
                    out,
                    "  {:<12} {:<28} {:>13} {:>13} {:>12} {:>12}  AGREE",
                    "VENDOR",
                    "RULE",
                    "AUDIT BLOCKED",
                    "PROM BLOCKED",
                    "AUDIT LOGGED",
                    "PROM LOGGED"
                );
                for row in &check.rows {
                    let _ = writeln!(
                        out,
                        "  {:<12} {:<28} {:>13} {:>13} {:>12} {:>12}  {}",
                        row.vendor,
                        row.rule,
                        row.audit_blocked,
                        row.prometheus_blocked,
                        row.audit_logged,
                        row.prometheus_logged,
                        if row.agrees() { "yes" } else { "NO" }
                    );
                }
            }
        }
    }
    if report.rules.is_empty() {
        let _ = writeln!(out, "No flow matched a rule in this period.");
        return out;
    }
    let _ = writeln!(out, "\nPer vendor:");
    let _ = writeln!(
        out,
        "  {:<20} {:>9} {:>9} {:>9}",
        "VENDOR", "BLOCKED", "LOGGED", "ALLOWED"
    );
    for v in &report.vendors {
        let _ = writeln!(
            out,
            "  {:<20} {:>9} {:>9} {:>9}",
            v.vendor, v.blocked, v.logged, v.allowed
        );
    }
    let _ = writeln!(out, "\nPer rule:");
    let width = report
        .rules
        .iter()
        .map(|r| r.rule.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "  {:<12} {:<width$} {:>9} {:>9} {:>9}  {:<27}  LAST SEEN",
        "VENDOR", "RULE", "BLOCKED", "LOGGED", "ALLOWED", "FIRST SEEN"
    );
    for r in &report.rules {
        let _ = writeln!(
            out,
            "  {:<12} {:<width$} {:>9} {:>9} {:>9}  {:<27}  {}",
            r.vendor, r.rule, r.blocked, r.logged, r.allowed, r.first_seen, r.last_seen
        );
    }
    if report.has_client_groups() {
        let _ = writeln!(out, "\nPer client group:");
        let _ = writeln!(
            out,
            "  {:<20} {:>9} {:>9} {:>9} {:>18}",
            "GROUP", "BLOCKED", "LOGGED", "ALLOWED", "TELEMETRY ATTEMPTS"
        );
        for g in &report.groups {
            let _ = writeln!(
                out,
                "  {:<20} {:>9} {:>9} {:>9} {:>18}",
                g.group, g.blocked, g.logged, g.allowed, g.telemetry_attempts
            );
        }
    }
    if !report.profiles.is_empty() {
        let _ = writeln!(out, "\nLet pass by service profiles:");
        for p in &report.profiles {
            let _ = writeln!(
                out,
                "  profile {}: {} flows by rule {} ({})",
                p.profile, p.flows, p.rule, p.vendor
            );
        }
    }
    if !report.top_clients.is_empty() {
        let _ = writeln!(
            out,
            "\nClients with the most telemetry attempts (top {TOP_CLIENTS}):"
        );
        let _ = writeln!(
            out,
            "  {:<36} {:<16} {:>9}  {:<12}  LAST SEEN",
            "CLIENT", "GROUP", "ATTEMPTS", "MOSTLY"
        );
        for c in &report.top_clients {
            let _ = writeln!(
                out,
                "  {:<36} {:<16} {:>9}  {:<12}  {}{}",
                c.client,
                c.group,
                c.telemetry_attempts,
                c.top_vendor,
                c.last_seen,
                if c.compromised_key_epoch.is_some() {
                    "  (key compromised)"
                } else {
                    ""
                }
            );
        }
    }
    if !report.key_epochs.is_empty() {
        let _ = writeln!(
            out,
            "\nPseudonymisation keys (client addresses written as keyed hashes):"
        );
        for k in &report.key_epochs {
            let _ = writeln!(out, "  {}", describe_key_epoch(k));
        }
    }
    out
}

/// One line for a key epoch, the same in text and HTML.
fn describe_key_epoch(k: &KeyEpochRow) -> String {
    let mut line = format!(
        "key epoch {}: {} flow records, {} clients, {} to {}",
        k.key_epoch, k.flows, k.clients, k.first_seen, k.last_seen
    );
    if let Some(since) = &k.compromised_since {
        let _ = write!(
            line,
            "; COMPROMISED (recorded {since}): these pseudonyms must be treated as identifying"
        );
    }
    line
}

/// The per-vendor table of a report (also of the fleet report).
pub(crate) fn vendor_table(vendors: &[VendorTotals]) -> String {
    let mut h = String::new();
    h.push_str("<table id=\"vendors\"><tr><th>Vendor</th><th class=\"n\">Blocked</th><th class=\"n\">Only logged</th><th class=\"n\">Allowed by exception</th></tr>");
    for v in vendors {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&v.vendor),
            v.blocked,
            v.logged,
            v.allowed
        );
    }
    h.push_str("</table>");
    h
}

/// The per-rule table of a report (also of the fleet report).
pub(crate) fn rule_table(rules: &[RuleRow]) -> String {
    let mut h = String::new();
    h.push_str("<table id=\"rules\"><tr><th>Vendor</th><th>Rule</th><th class=\"n\">Blocked</th><th class=\"n\">Only logged</th><th class=\"n\">Allowed</th><th>First seen</th><th>Last seen</th></tr>");
    for r in rules {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.vendor),
            escape(&r.rule),
            r.blocked,
            r.logged,
            r.allowed,
            escape(&r.first_seen),
            escape(&r.last_seen)
        );
    }
    h.push_str("</table>");
    h
}

pub fn html(report: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>telestrip report {} to {}</title><style>{STYLE}</style></head><body>",
        escape(&report.since),
        escape(&report.until)
    );
    let _ = write!(
        h,
        "<h1>Telemetry filtering report</h1><p>Period: <b>{}</b> to <b>{}</b>. Generated {} by telestrip {}.</p>",
        escape(&report.since),
        escape(&report.until),
        escape(&report.generated),
        env!("CARGO_PKG_VERSION")
    );
    let chain = &report.chain;
    if chain.verified {
        let _ = write!(
            h,
            "<p><span id=\"chain\" class=\"badge ok\">Audit chain verified</span> {} records ({} to {}); head <code>{}</code></p>",
            chain.records,
            chain.first_record.unwrap_or(0),
            chain.last_record.unwrap_or(0),
            escape(chain.head.as_deref().unwrap_or("-"))
        );
    } else {
        let _ = write!(
            h,
            "<p><span id=\"chain\" class=\"badge bad\">Audit chain BROKEN</span> at {}; only the {} records before it are counted.</p>",
            escape(chain.broken.as_deref().unwrap_or("?")),
            chain.records
        );
    }
    for warning in &chain.warnings {
        let _ = write!(h, "<p class=\"warn\">Note: {}</p>", escape(warning));
    }
    let _ = write!(
        h,
        "<p class=\"small\">Audit logs: {}</p>",
        escape(&report.files.join(", "))
    );
    let class = if report.coverage >= 0.999 {
        "ok"
    } else {
        "warn"
    };
    let _ = write!(
        h,
        "<h2>Was the filter running?</h2><p><span id=\"coverage\" class=\"badge {class}\">{:.1}% of the period</span></p><table><tr><th>From</th><th>To</th><th>Mode</th><th>Fail</th><th>End</th></tr>",
        report.coverage * 100.0
    );
    for run in &report.runs {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&run.started),
            escape(&run.ended),
            if run.enforce {
                "enforcing"
            } else {
                "<span class=\"bad\">dry run</span>"
            },
            escape(&run.fail),
            if run.stopped_cleanly {
                "stopped cleanly"
            } else {
                "<span class=\"warn\">no stop record</span>"
            }
        );
        for silence in &run.silences {
            let _ = write!(
                h,
                "<tr><td colspan=\"5\" class=\"warn\">silent: {}</td></tr>",
                escape(silence)
            );
        }
    }
    h.push_str("</table><h2>Rulesets in force</h2><table><tr><th>Ruleset</th><th>SHA-256</th><th>From</th><th>To</th></tr>");
    for r in &report.rulesets {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&r.ruleset),
            escape(&r.sha256),
            escape(&r.from),
            escape(&r.until)
        );
    }
    h.push_str("</table>");
    if !report.rule_updates.is_empty() {
        h.push_str("<h2>Signed rule updates</h2><ul id=\"rule-updates\">");
        for u in &report.rule_updates {
            let _ = write!(h, "<li>{}</li>", escape(&describe_update(u)));
        }
        h.push_str("</ul>");
    }
    let _ = write!(
        h,
        "<p id=\"bypass\">Attempts to get around the filter: {} (telemetry over QUIC, real ECH, DoH resolvers, HTTPS/SVCB queries for blocked names, flows blocked by a learned address).</p>",
        escape(&bypass_text(report))
    );
    if report.events_dropped > 0 {
        let _ = write!(
            h,
            "<p class=\"bad\">{} matched flows were not written (the writer fell behind); they are not counted below.</p>",
            report.events_dropped
        );
    }
    h.push_str("<h2>Telemetry per vendor</h2>");
    h.push_str(&vendor_table(&report.vendors));
    if !report.blocked_per_day.is_empty() {
        h.push_str("<h2>Blocked flows per day</h2>");
        h.push_str(&bar_chart("Blocked flows per day", &report.blocked_per_day));
    }
    h.push_str("<h2>Per rule</h2>");
    h.push_str(&rule_table(&report.rules));
    if report.has_client_groups() {
        h.push_str("<h2>Per client group</h2><table id=\"groups\"><tr><th>Group</th><th class=\"n\">Blocked</th><th class=\"n\">Only logged</th><th class=\"n\">Allowed</th><th class=\"n\">Telemetry attempts</th></tr>");
        for g in &report.groups {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&g.group), g.blocked, g.logged, g.allowed, g.telemetry_attempts
            );
        }
        h.push_str("</table>");
    }
    if !report.profiles.is_empty() {
        h.push_str("<h2>Let pass by service profiles</h2><table id=\"profiles\"><tr><th>Profile</th><th>Vendor</th><th>Rule</th><th class=\"n\">Flows</th></tr>");
        for p in &report.profiles {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                escape(&p.profile),
                escape(&p.vendor),
                escape(&p.rule),
                p.flows
            );
        }
        h.push_str("</table>");
    }
    if !report.top_clients.is_empty() {
        let _ = write!(
            h,
            "<h2>Clients with the most telemetry attempts</h2><table id=\"clients\"><tr><th>Client</th><th>Group</th><th class=\"n\">Attempts</th><th>Mostly</th><th>Last seen</th></tr>"
        );
        for c in &report.top_clients {
            let _ = write!(
                h,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.client),
                if c.compromised_key_epoch.is_some() {
                    " <strong class=\"bad\">key compromised</strong>"
                } else {
                    ""
                },
                escape(&c.group),
                c.telemetry_attempts,
                escape(&c.top_vendor),
                escape(&c.last_seen)
            );
        }
        h.push_str("</table>");
    }
    if !report.key_epochs.is_empty() {
        h.push_str("<h2>Pseudonymisation keys</h2><ul id=\"key-epochs\">");
        for k in &report.key_epochs {
            let _ = write!(
                h,
                "<li{}>{}</li>",
                if k.compromised_since.is_some() {
                    " class=\"bad\""
                } else {
                    ""
                },
                escape(&describe_key_epoch(k))
            );
        }
        h.push_str("</ul>");
    }
    if let Some(check) = &report.prometheus {
        let _ = write!(
            h,
            "<h2>Cross-check with the gateway's counters (Prometheus)</h2><p>{}</p>",
            escape(&check.url)
        );
        match &check.error {
            Some(error) => {
                let _ = write!(h, "<p class=\"bad\">Not possible: {}</p>", escape(error));
            }
            None => {
                h.push_str("<table id=\"prometheus\"><tr><th>Vendor</th><th>Rule</th><th class=\"n\">Blocked (audit)</th><th class=\"n\">Blocked (Prometheus)</th><th class=\"n\">Logged (audit)</th><th class=\"n\">Logged (Prometheus)</th><th>Agree</th></tr>");
                for row in &check.rows {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"{}\">{}</td></tr>",
                        escape(&row.vendor), escape(&row.rule), row.audit_blocked, row.prometheus_blocked, row.audit_logged, row.prometheus_logged,
                        if row.agrees() { "ok" } else { "bad" },
                        if row.agrees() { "yes" } else { "NO" }
                    );
                }
                h.push_str("</table>");
            }
        }
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests;
