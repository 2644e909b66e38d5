//! `telestrip report --fleet`: one account over the audit logs of many gateways (files or
//! directories, e.g. what the central rsyslog of deploy/rsyslog writes), grouped by the
//! gateway their records name, each chain verified on its own. Per gateway: chain, coverage,
//! silences, rulesets; per site: the share of the period at least one of its gateways
//! enforced; fleet totals per vendor and rule. Gateways that need attention come first.
//! Gateways are read one after the other, each in one pass: memory grows with the number of
//! gateways and rules, not with the length of the logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{build, rule_table, vendor_table, Period, RuleRow, VendorTotals};
use crate::html::{escape, STYLE};
use crate::output::format_system_time;

/// Lines read from the start of a file to find the gateway it belongs to (a heartbeat comes
/// every minute, so a name appears early).
const NAME_SEARCH_LINES: usize = 100_000;

#[derive(Debug, Serialize)]
pub struct FleetReport {
    pub since: String,
    pub until: String,
    pub generated: String,
    /// Gateways needing attention first (broken chain, gaps in coverage, dry run), then by
    /// site and name.
    pub gateways: Vec<GatewayRow>,
    pub sites: Vec<SiteRow>,
    pub vendors: Vec<VendorTotals>,
    pub rules: Vec<RuleRow>,
    /// Different rulesets (by SHA-256) in force across the fleet in the period.
    pub rulesets: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct GatewayRow {
    pub gateway: String,
    pub site: Option<String>,
    pub files: Vec<String>,
    pub chain_verified: bool,
    pub chain_broken: Option<String>,
    pub records: u64,
    /// Share of the period the filter ran (0 to 1), and the share it ran and enforced.
    pub coverage: f64,
    pub enforcing: f64,
    pub silences: usize,
    /// Ruleset versions in force in the period.
    pub rulesets: Vec<String>,
    /// Signed rule packs this gateway put in force in the period.
    pub rule_updates: Vec<super::RuleUpdate>,
    pub blocked: u64,
    pub logged: u64,
    pub events_dropped: u64,
    /// With `--prometheus`: the gateway's own counters (series labelled with its name)
    /// against its log, rule by rule.
    pub prometheus: Option<super::prometheus::PrometheusCheck>,
    /// Why this gateway needs attention (empty: it does not).
    pub attention: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SiteRow {
    pub site: String,
    pub gateways: Vec<String>,
    /// Share of the period at least one of the site's gateways ran and enforced.
    pub covered: f64,
}

/// The audit files under `paths` (files, or directories searched recursively for
/// `*.jsonl*`), grouped by gateway, each group in chain order.
pub fn gateways(paths: &[PathBuf]) -> std::io::Result<BTreeMap<String, Vec<PathBuf>>> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut groups: BTreeMap<String, Vec<(u64, PathBuf)>> = BTreeMap::new();
    for file in files {
        let (gateway, first_seq) = identify(&file)?;
        let gateway = gateway.unwrap_or_else(|| {
            // A central copy lives in a directory named after its gateway.
            let dir = file
                .parent()
                .and_then(Path::file_name)
                .map_or_else(|| "?".into(), |d| d.to_string_lossy().into_owned());
            format!("unnamed ({dir})")
        });
        groups.entry(gateway).or_default().push((first_seq, file));
    }
    Ok(groups
        .into_iter()
        .map(|(gateway, mut files)| {
            files.sort();
            (gateway, files.into_iter().map(|(_, f)| f).collect())
        })
        .collect())
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        // Audit logs and their rotated files; not the daemon's chain head files.
        let is_log = entry.file_name().is_some_and(|n| {
            let name = n.to_string_lossy();
            name.contains(".jsonl") && !name.ends_with(".head")
        });
        if entry.is_dir() || is_log {
            collect(&entry, out)?;
        }
    }
    Ok(())
}

/// The gateway a file's records name, and the number of its first record.
fn identify(file: &Path) -> std::io::Result<(Option<String>, u64)> {
    let reader = BufReader::new(
        std::fs::File::open(file)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?,
    );
    let mut first_seq = None;
    for line in reader.lines().take(NAME_SEARCH_LINES) {
        let Ok(line) = line else { break };
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        first_seq.get_or_insert(record["seq"].as_u64().unwrap_or(0));
        if let Some(gateway) = record["gateway"].as_str() {
            return Ok((Some(gateway.to_string()), first_seq.unwrap_or(0)));
        }
    }
    Ok((None, first_seq.unwrap_or(0)))
}

/// Builds the fleet report for `period` over the audit logs under `paths`; with
/// `prometheus`, each gateway's log is checked against the series labelled
/// `gateway="NAME"` on that server.
pub fn build_fleet(
    paths: &[PathBuf],
    period: Period,
    prometheus: Option<&str>,
) -> std::io::Result<FleetReport> {
    let groups = gateways(paths)?;
    let mut rows = Vec::new();
    let mut intervals: BTreeMap<String, Vec<(SystemTime, SystemTime)>> = BTreeMap::new();
    let mut vendors: BTreeMap<String, VendorTotals> = BTreeMap::new();
    let mut rules: BTreeMap<(String, String), RuleRow> = BTreeMap::new();
    let mut rulesets = std::collections::BTreeSet::new();
    let mut bounds: Option<(SystemTime, SystemTime)> = None;
    for (gateway, files) in &groups {
        let mut report = build(files, period)?;
        if let Some(url) = prometheus {
            super::check_prometheus(&mut report, url, &format!("gateway=\"{gateway}\""));
        }
        let (since, until) = report.period;
        bounds = Some(bounds.map_or((since, until), |(a, b)| (a.min(since), b.max(until))));
        let site = report.site.clone();
        intervals
            .entry(
                site.clone()
                    .unwrap_or_else(|| format!("(no site: {gateway})")),
            )
            .or_default()
            .extend(report.enforcing.iter().copied());
        for v in &report.vendors {
            let total = vendors
                .entry(v.vendor.clone())
                .or_insert_with(|| VendorTotals {
                    vendor: v.vendor.clone(),
                    ..VendorTotals::default()
                });
            total.blocked += v.blocked;
            total.logged += v.logged;
            total.allowed += v.allowed;
        }
        for r in &report.rules {
            let total = rules
                .entry((r.vendor.clone(), r.rule.clone()))
                .or_insert_with(|| RuleRow {
                    vendor: r.vendor.clone(),
                    rule: r.rule.clone(),
                    first_seen: r.first_seen.clone(),
                    ..RuleRow::default()
                });
            total.blocked += r.blocked;
            total.logged += r.logged;
            total.allowed += r.allowed;
            total.first_seen = total.first_seen.clone().min(r.first_seen.clone());
            total.last_seen = total.last_seen.clone().max(r.last_seen.clone());
        }
        rulesets.extend(report.rulesets.iter().map(|r| r.sha256.clone()));
        let length = until.duration_since(since).unwrap_or_default();
        let enforcing = share(&report.enforcing, length);
        let silences: usize = report.runs.iter().map(|r| r.silences.len()).sum();
        let mut attention = Vec::new();
        if let Some(broken) = &report.chain.broken {
            attention.push(format!("chain broken: {broken}"));
        }
        if report.coverage < 0.999 {
            attention.push(format!(
                "filter not running {:.1} % of the period",
                (1.0 - report.coverage) * 100.0
            ));
        }
        if enforcing + 0.001 < report.coverage {
            attention.push("in dry run part of the period".into());
        }
        if let Some(check) = &report.prometheus {
            if let Some(error) = &check.error {
                attention.push(format!("its counters could not be read: {error}"));
            } else if check.rows.iter().any(|row| !row.agrees()) {
                attention.push("its counters in Prometheus differ from its log".into());
            }
        }
        if report.events_dropped > 0 {
            attention.push(format!(
                "{} matched flows not written",
                report.events_dropped
            ));
        }
        rows.push(GatewayRow {
            gateway: gateway.clone(),
            site,
            files: report.files.clone(),
            chain_verified: report.chain.verified,
            chain_broken: report.chain.broken.clone(),
            records: report.chain.records,
            coverage: report.coverage,
            enforcing,
            silences,
            rulesets: report.rulesets.iter().map(|r| r.ruleset.clone()).collect(),
            rule_updates: report.rule_updates.clone(),
            blocked: report.vendors.iter().map(|v| v.blocked).sum(),
            logged: report.vendors.iter().map(|v| v.logged).sum(),
            events_dropped: report.events_dropped,
            prometheus: report.prometheus.take(),
            attention,
        });
    }
    let (since, until) = match (period.since, period.until, bounds) {
        (Some(s), Some(u), _) => (s, u),
        (s, u, Some((a, b))) => (s.unwrap_or(a), u.unwrap_or(b)),
        (s, u, None) => {
            let s = s.unwrap_or(SystemTime::UNIX_EPOCH);
            (s, u.unwrap_or(s))
        }
    };
    let length = until.duration_since(since).unwrap_or_default();
    let sites = intervals
        .into_iter()
        .map(|(site, spans)| SiteRow {
            gateways: rows
                .iter()
                .filter(|r| r.site.as_deref() == Some(site.as_str()))
                .map(|r| r.gateway.clone())
                .collect(),
            covered: share(&spans, length),
            site,
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.attention.is_empty(), &a.site, &a.gateway).cmp(&(
            b.attention.is_empty(),
            &b.site,
            &b.gateway,
        ))
    });
    Ok(FleetReport {
        since: format_system_time(since),
        until: format_system_time(until),
        generated: format_system_time(SystemTime::now()),
        gateways: rows,
        sites,
        vendors: vendors.into_values().collect(),
        rules: rules.into_values().collect(),
        rulesets: rulesets.into_iter().collect(),
    })
}

/// The share of `length` the union of `spans` covers.
fn share(spans: &[(SystemTime, SystemTime)], length: Duration) -> f64 {
    if length.is_zero() {
        return if spans.is_empty() { 0.0 } else { 1.0 };
    }
    let mut sorted = spans.to_vec();
    sorted.sort();
    let mut covered = Duration::ZERO;
    let mut current: Option<(SystemTime, SystemTime)> = None;
    for (from, to) in sorted {
        match &mut current {
            Some((_, end)) if from <= *end => *end = (*end).max(to),
            _ => {
                if let Some((a, b)) = current {
                    covered += b.duration_since(a).unwrap_or_default();
                }
                current = Some((from, to));
            }
        }
    }
    if let Some((a, b)) = current {
        covered += b.duration_since(a).unwrap_or_default();
    }
    (covered.as_secs_f64() / length.as_secs_f64()).min(1.0)
}

fn percent(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}

pub fn fleet_text(report: &FleetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "telestrip fleet report, {} to {}",
        report.since, report.until
    );
    let attention = report
        .gateways
        .iter()
        .filter(|g| !g.attention.is_empty())
        .count();
    let _ = writeln!(
        out,
        "{} gateways at {} sites; {attention} need attention; {} ruleset(s) in force.\n",
        report.gateways.len(),
        report.sites.len(),
        report.rulesets.len()
    );
    let _ = writeln!(
        out,
        "Sites (covered: at least one gateway running and enforcing)"
    );
    for site in &report.sites {
        let _ = writeln!(
            out,
            "  {:<24} covered {:>9}  gateways {}",
            site.site,
            percent(site.covered),
            site.gateways.join(", ")
        );
    }
    let _ = writeln!(out, "\nGateways (those needing attention first)");
    for g in &report.gateways {
        let _ = writeln!(
            out,
            "  {:<20} site {:<14} chain {:<8} running {:>9}  enforcing {:>9}  silences {}  blocked {}  logged {}  rulesets {}",
            g.gateway,
            g.site.as_deref().unwrap_or("-"),
            if g.chain_verified { "verified" } else { "BROKEN" },
            percent(g.coverage),
            percent(g.enforcing),
            g.silences,
            g.blocked,
            g.logged,
            g.rulesets.join(" ")
        );
        for why in &g.attention {
            let _ = writeln!(out, "      ! {why}");
        }
        for update in &g.rule_updates {
            let _ = writeln!(out, "      rules {}", super::describe_update(update));
        }
        if let Some(check) = &g.prometheus {
            if check.error.is_none() {
                let agree = check.rows.iter().filter(|row| row.agrees()).count();
                let _ = writeln!(
                    out,
                    "      counters in Prometheus: {agree} of {} rules agree with the log",
                    check.rows.len()
                );
            }
        }
    }
    let _ = writeln!(out, "\nFleet totals per vendor");
    for v in &report.vendors {
        let _ = writeln!(
            out,
            "  {:<20} blocked {:>8}  logged {:>8}  allowed {:>8}",
            v.vendor, v.blocked, v.logged, v.allowed
        );
    }
    let _ = writeln!(out, "\nFleet totals per rule");
    for r in &report.rules {
        let _ = writeln!(
            out,
            "  {:<12} {:<36} blocked {:>8}  logged {:>8}  allowed {:>8}",
            r.vendor, r.rule, r.blocked, r.logged, r.allowed
        );
    }
    out
}

pub fn fleet_html(report: &FleetReport) -> String {
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>telestrip fleet report</title><style>{STYLE}</style></head><body><h1>telestrip fleet report</h1><p>{} to {}: {} gateways at {} sites, {} ruleset(s) in force.</p>",
        escape(&report.since),
        escape(&report.until),
        report.gateways.len(),
        report.sites.len(),
        report.rulesets.len()
    );
    html.push_str(
        "<h2>Sites</h2><table id=\"sites\"><tr><th>Site</th><th>Covered</th><th>Gateways</th></tr>",
    );
    for site in &report.sites {
        let class = if site.covered < 0.999 { "bad" } else { "ok" };
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
            escape(&site.site),
            percent(site.covered),
            escape(&site.gateways.join(", "))
        );
    }
    html.push_str("</table><h2>Gateways</h2><table id=\"gateways\"><tr><th>Gateway</th><th>Site</th><th>Chain</th><th>Running</th><th>Enforcing</th><th>Silences</th><th>Blocked</th><th>Logged</th><th>Rulesets</th><th>Signed rule updates</th><th>Attention</th></tr>");
    for g in &report.gateways {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td></tr>",
            escape(&g.gateway),
            escape(g.site.as_deref().unwrap_or("-")),
            if g.chain_verified { "ok" } else { "bad" },
            if g.chain_verified { "verified" } else { "BROKEN" },
            percent(g.coverage),
            percent(g.enforcing),
            g.silences,
            g.blocked,
            g.logged,
            escape(&g.rulesets.join(" ")),
            escape(
                &g.rule_updates
                    .iter()
                    .map(|u| format!("{} {} v{}", u.time, u.how, u.ruleset_version))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            escape(&g.attention.join("; "))
        );
    }
    html.push_str("</table><h2>Fleet totals per vendor</h2>");
    html.push_str(&vendor_table(&report.vendors));
    html.push_str("<h2>Fleet totals per rule</h2>");
    html.push_str(&rule_table(&report.rules));
    let _ = writeln!(
        html,
        "<p>Generated {}.</p></body></html>",
        escape(&report.generated)
    );
    html
}
