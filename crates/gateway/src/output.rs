//! Output of `telestrip pcap`: matched flows and a per-vendor/rule summary as a table, JSON
//! or CSV.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::engine::FlowEvent;

/// Output format of `telestrip pcap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document: flows, summary, counters.
    Json,
    /// One line per matched flow, with a header line.
    Csv,
}

/// Matches of one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleSummary {
    pub vendor: String,
    pub rule: String,
    pub action: String,
    pub applied: String,
    pub flows: u64,
    /// Distinct names seen for this rule (at most [`MAX_NAMES_PER_RULE`] listed).
    pub names: Vec<String>,
}

/// Names listed per rule in the summary; the count is always exact.
pub const MAX_NAMES_PER_RULE: usize = 20;

/// Groups events by vendor and rule, in that order.
pub fn summarise(events: &[FlowEvent]) -> Vec<RuleSummary> {
    let mut by_rule: BTreeMap<(String, String, String), RuleSummary> = BTreeMap::new();
    for event in events {
        let key = (
            event.vendor.to_string(),
            event.rule.to_string(),
            event.applied.to_string(),
        );
        let summary = by_rule.entry(key).or_insert_with(|| RuleSummary {
            vendor: event.vendor.to_string(),
            rule: event.rule.to_string(),
            action: event.action.to_string(),
            applied: event.applied.to_string(),
            flows: 0,
            names: Vec::new(),
        });
        summary.flows += 1;
        if let Some(name) = &event.name {
            if !summary.names.contains(name) && summary.names.len() < MAX_NAMES_PER_RULE {
                summary.names.push(name.clone());
            }
        }
    }
    by_rule.into_values().collect()
}

/// One matched flow as written out.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRow {
    pub time: String,
    pub protocol: String,
    pub client: String,
    pub server: String,
    pub name: String,
    pub via: String,
    pub rule: String,
    pub vendor: String,
    pub action: String,
    pub applied: String,
    /// The client's group, left out for the default group (offline audits have only it).
    #[serde(skip_serializing_if = "is_default_group")]
    pub group: String,
    /// The service profile whose allow rule let the flow pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

fn is_default_group(group: &str) -> bool {
    group == crate::clients::DEFAULT_GROUP
}

impl FlowRow {
    pub fn of(event: &FlowEvent) -> Self {
        Self {
            time: format_time(event.time),
            protocol: event.protocol.to_string(),
            client: endpoint(event.client, event.client_port),
            server: endpoint(event.server, event.server_port),
            name: event.name.clone().unwrap_or_default(),
            via: event.via.to_string(),
            rule: event.rule.to_string(),
            vendor: event.vendor.to_string(),
            action: event.action.to_string(),
            applied: event.applied.to_string(),
            group: event.group.to_string(),
            profile: event.profile.as_deref().map(str::to_string),
        }
    }
}

/// `192.0.2.1:443`, `[2001:db8::1]:443`.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// First second humantime cannot write (year 10000).
const YEAR_10000: u64 = 253_402_300_800;

/// RFC 3339 UTC time with microseconds, from a capture timestamp. A damaged capture can
/// claim a time past year 9999, which RFC 3339 cannot express: that one is written as
/// `unix:SECONDS.MICROS`.
pub fn format_time(time: Duration) -> String {
    if time.as_secs() >= YEAR_10000 {
        return format!("unix:{}.{:06}", time.as_secs(), time.subsec_micros());
    }
    humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + time).to_string()
}

/// [`format_time`] of a clock reading (times before 1970 are written as 1970).
pub fn format_system_time(time: std::time::SystemTime) -> String {
    format_time(
        time.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// Writes flows and summary as an aligned table.
pub fn write_table(
    out: &mut dyn Write,
    events: &[FlowEvent],
    summary: &[RuleSummary],
) -> io::Result<()> {
    let rows: Vec<FlowRow> = events.iter().map(FlowRow::of).collect();
    if rows.is_empty() {
        writeln!(out, "No flow matched a rule.")?;
    } else {
        let headers = [
            "TIME", "PROTO", "CLIENT", "SERVER", "NAME", "VIA", "RULE", "VENDOR", "ACTION",
        ];
        let cells: Vec<[String; 9]> = rows
            .iter()
            .map(|r| {
                let action = if r.action == r.applied {
                    r.action.clone()
                } else {
                    format!("{} (dry run: {})", r.applied, r.action)
                };
                [
                    r.time.clone(),
                    r.protocol.clone(),
                    r.client.clone(),
                    r.server.clone(),
                    if r.name.is_empty() {
                        "-".into()
                    } else {
                        r.name.clone()
                    },
                    r.via.clone(),
                    r.rule.clone(),
                    r.vendor.clone(),
                    action,
                ]
            })
            .collect();
        write_columns(out, &headers, &cells)?;
    }
    if !summary.is_empty() {
        writeln!(out)?;
        writeln!(out, "Summary by vendor and rule:")?;
        let headers = ["VENDOR", "RULE", "ACTION", "FLOWS", "NAMES"];
        let cells: Vec<[String; 5]> = summary
            .iter()
            .map(|s| {
                let action = if s.action == s.applied {
                    s.action.clone()
                } else {
                    format!("{} (dry run: {})", s.applied, s.action)
                };
                [
                    s.vendor.clone(),
                    s.rule.clone(),
                    action,
                    s.flows.to_string(),
                    s.names.join(", "),
                ]
            })
            .collect();
        write_columns(out, &headers, &cells)?;
    }
    Ok(())
}

fn write_columns<const N: usize>(
    out: &mut dyn Write,
    headers: &[&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Writes flows as CSV (RFC 4180 quoting).
pub fn write_csv(out: &mut dyn Write, events: &[FlowEvent]) -> io::Result<()> {
    writeln!(
        out,
        "time,protocol,client,server,name,via,rule,vendor,action,applied"
    )?;
    for event in events {
        let r = FlowRow::of(event);
        let fields = [
            &r.time,
            &r.protocol,
            &r.client,
            &r.server,
            &r.name,
            &r.via,
            &r.rule,
            &r.vendor,
            &r.action,
            &r.applied,
        ];
        let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", quoted.join(","))?;
    }
    Ok(())
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Nonzero counts as one line, `3 sni, 1 dns` (in the order given), or `none`.
pub fn counts_text<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let listed: Vec<String> = counts
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect();
    if listed.is_empty() {
        "none".to_string()
    } else {
        listed.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_capture_time_as_rfc3339_utc() {
        assert_eq!(
            format_time(Duration::from_secs(0)),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            format_time(Duration::new(1_700_000_000, 123_456_000)),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            format_time(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            format_time(Duration::from_secs(YEAR_10000 - 1)),
            "9999-12-31T23:59:59.000000Z"
        );
        assert_eq!(
            format_time(Duration::new(u64::MAX, 5_000)),
            format!("unix:{}.000005", u64::MAX)
        );
    }

    #[test]
    fn quotes_csv_fields_that_need_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
