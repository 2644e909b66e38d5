//! `telestrip audit verify` and `telestrip report`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{exit, CommandError};
use crate::audit;
use crate::report::{self, Period};

pub fn audit_verify(files: &[PathBuf], out: &mut dyn Write) -> Result<u8, CommandError> {
    let found = match audit::verify(files, |_| {}) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("telestrip: {error}");
            return Ok(exit::ERROR);
        }
    };
    match &found.broken {
        None => {
            let (first, last) = (found.first.as_ref(), found.last.as_ref());
            writeln!(
                out,
                "VERIFIED: {} records ({} to {}) in {} file(s), unaltered and in order.",
                found.records,
                first.map_or(0, |f| f.0),
                last.map_or(0, |l| l.0),
                files.len()
            )?;
            if let Some((seq, hash)) = last {
                writeln!(out, "Head: record {seq} {hash}")?;
            }
            if found.repeated > 0 {
                writeln!(
                    out,
                    "note: {} lines repeat records already read, byte for byte (a log shipper delivered them twice); they were skipped",
                    found.repeated
                )?;
            }
        }
        Some(broken) => {
            writeln!(out, "BROKEN: {broken}")?;
            writeln!(out, "{} records before it are intact.", found.records)?;
        }
    }
    for warning in &found.warnings {
        writeln!(out, "note: {warning}")?;
    }
    Ok(if found.ok() { exit::OK } else { exit::FOUND })
}

#[derive(Clone, Copy, Debug)]
pub enum ReportFormat {
    Text,
    Json,
    Html,
}

pub fn report(
    files: &[PathBuf],
    period: Period,
    prometheus: Option<(&str, &str)>,
    format: ReportFormat,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<u8, CommandError> {
    check_period(&period)?;
    let mut report = match report::build(files, period) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("telestrip: {error}");
            return Ok(exit::ERROR);
        }
    };
    if let Some((url, selector)) = prometheus {
        report::check_prometheus(&mut report, url, selector);
    }
    let rendered = render(&report, format, report::text, report::html)?;
    deliver(&rendered, output, "report", out)?;
    if let Some(broken) = &report.chain.broken {
        eprintln!("telestrip: the audit chain is broken at {broken}");
    }
    let disagree = report
        .prometheus
        .as_ref()
        .is_some_and(|check| check.error.is_some() || check.rows.iter().any(|row| !row.agrees()));
    if disagree {
        eprintln!("telestrip: the audit log and the gateway's counters in Prometheus do not agree (or Prometheus could not be asked)");
    }
    Ok(if report.chain.verified && !disagree {
        exit::OK
    } else {
        exit::FOUND
    })
}

/// `telestrip report --fleet`.
pub fn fleet_report(
    paths: &[PathBuf],
    period: Period,
    prometheus: Option<&str>,
    format: ReportFormat,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<u8, CommandError> {
    check_period(&period)?;
    let report = match report::fleet::build_fleet(paths, period, prometheus) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("telestrip: {error}");
            return Ok(exit::ERROR);
        }
    };
    let rendered = render(
        &report,
        format,
        report::fleet::fleet_text,
        report::fleet::fleet_html,
    )?;
    deliver(&rendered, output, "fleet report", out)?;
    let broken: Vec<&str> = report
        .gateways
        .iter()
        .filter(|g| !g.chain_verified)
        .map(|g| g.gateway.as_str())
        .collect();
    if !broken.is_empty() {
        eprintln!(
            "telestrip: the audit chain is broken for {}",
            broken.join(", ")
        );
    }
    Ok(if broken.is_empty() {
        exit::OK
    } else {
        exit::FOUND
    })
}

fn check_period(period: &Period) -> Result<(), CommandError> {
    match (period.since, period.until) {
        (Some(since), Some(until)) if until <= since => {
            Err(CommandError::Usage("--until must be after --since".into()))
        }
        _ => Ok(()),
    }
}

/// A report as text, JSON or HTML.
fn render<R: serde::Serialize>(
    report: &R,
    format: ReportFormat,
    text: fn(&R) -> String,
    html: fn(&R) -> String,
) -> Result<String, CommandError> {
    Ok(match format {
        ReportFormat::Text => text(report),
        ReportFormat::Json => {
            serde_json::to_string_pretty(report).map_err(std::io::Error::from)? + "\n"
        }
        ReportFormat::Html => html(report),
    })
}

/// Writes a rendered `what` to `output`, or to `out` without one.
fn deliver(
    rendered: &str,
    output: Option<&Path>,
    what: &str,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match output {
        Some(path) => {
            std::fs::write(path, rendered).map_err(|e| {
                CommandError::Usage(format!("cannot write {}: {e}", path.display()))
            })?;
            eprintln!("telestrip: {what} written to {}", path.display());
        }
        None => out.write_all(rendered.as_bytes())?,
    }
    Ok(())
}
