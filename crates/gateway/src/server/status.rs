//! The status page: is the filter running, with which ruleset, in which mode, and what did
//! it stop per vendor over the last hour and day.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use super::{tally, unix_seconds, ControlPlane};
use crate::html::{bar_chart, escape, STYLE};
use crate::output::format_system_time;
use crate::stats::EchAnswer;

/// What the page shows, also served as `/status.json`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// This gateway and its site (`gateway:`, `site:` in the config).
    pub gateway: Option<String>,
    pub site: Option<String>,
    pub version: String,
    pub ruleset: String,
    pub ruleset_sha256: String,
    pub rules: usize,
    pub mode: String,
    pub enforce: bool,
    pub fail: String,
    /// The `ech:` policy for flows with real ECH (`allow`, `log`, `drop`).
    pub ech_policy: String,
    pub strip_ech: bool,
    /// Flows with real ECH since the start, and DNS answers whose ECH keys were taken out.
    pub real_ech_flows: u64,
    pub ech_answers_stripped: u64,
    pub started: String,
    pub uptime_seconds: u64,
    pub last_reload: Option<Reload>,
    pub audit_problem: Option<String>,
    /// What a configured part of a gateway pair lacks now (the gateway still filters).
    pub degraded: Option<String>,
    /// A gateway pair: what this gateway shares with the other (absent: not in a pair).
    pub pair: Option<Pair>,
    pub vendors: Vec<VendorRow>,
    /// Blocked flows (all vendors) per hour, oldest first; the last is the current hour.
    pub blocked_per_hour: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
pub struct Pair {
    /// This gateway holds the pair's virtual addresses (None: none configured).
    pub active: Option<bool>,
    /// Sockets listening to connection events (conntrackd).
    pub conntrack_event_listeners: Option<u64>,
    /// Block verdicts written to the connection table for conntrackd, and the failures.
    pub verdicts_announced: Option<u64>,
    pub verdicts_not_announced: Option<u64>,
    /// Learned state shared through Redis: reachable now, facts written and imported.
    pub shared_state_up: Option<bool>,
    pub facts_written: Option<u64>,
    pub facts_imported: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Reload {
    pub time: String,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct VendorRow {
    pub vendor: String,
    pub blocked_last_hour: u64,
    pub blocked_last_day: u64,
    pub logged_last_day: u64,
    pub blocked_since_start: u64,
}

impl Status {
    pub fn of(control: &ControlPlane, now: SystemTime) -> Self {
        let rules = control.engine.rules();
        let now_s = unix_seconds(now);
        let current = tally(&control.engine);
        let history = control.history.lock().unwrap_or_else(|e| e.into_inner());
        let hour_ago = history.at(now_s.saturating_sub(3600));
        let day_ago = history.at(now_s.saturating_sub(86_400));
        let vendors = current
            .iter()
            // Vendors whose rules never matched since the start are no news.
            .filter(|(_, now)| now.blocked + now.logged > 0)
            .map(|(vendor, now)| {
                let then = |at: &BTreeMap<String, super::Tally>| {
                    at.get(vendor).copied().unwrap_or_default()
                };
                VendorRow {
                    vendor: vendor.clone(),
                    blocked_last_hour: now.blocked - then(&hour_ago).blocked.min(now.blocked),
                    blocked_last_day: now.blocked - then(&day_ago).blocked.min(now.blocked),
                    logged_last_day: now.logged - then(&day_ago).logged.min(now.logged),
                    blocked_since_start: now.blocked,
                }
            })
            .collect();
        let total =
            |at: &BTreeMap<String, super::Tally>| at.values().map(|t| t.blocked).sum::<u64>();
        let mut blocked_per_hour = Vec::with_capacity(24);
        let mut later = total(&current);
        for hours_back in 0..24u64 {
            let start = now_s.saturating_sub((hours_back + 1) * 3600);
            let earlier = total(&history.at(start));
            let label = if hours_back == 0 {
                "now".to_string()
            } else {
                format!("-{hours_back}h")
            };
            blocked_per_hour.push((label, later.saturating_sub(earlier)));
            later = earlier;
        }
        blocked_per_hour.reverse();
        let reload = control
            .reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Status {
            gateway: control.run.gateway.clone(),
            site: control.run.site.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ruleset: rules.version().to_string(),
            ruleset_sha256: rules.sha256().to_string(),
            rules: rules.stats().rules,
            mode: control.run.mode.to_string(),
            enforce: control.run.enforce,
            fail: control.run.fail.to_string(),
            ech_policy: control
                .engine
                .config()
                .ech_policy
                .action()
                .as_str()
                .to_string(),
            strip_ech: control.run.strip_ech,
            real_ech_flows: control.engine.counters.sum(|c| &c.ech_real),
            ech_answers_stripped: [EchAnswer::Stripped, EchAnswer::Hidden]
                .into_iter()
                .map(|kind| control.engine.counters.ech_answer_of(kind))
                .sum(),
            started: format_system_time(control.started),
            uptime_seconds: now
                .duration_since(control.started)
                .unwrap_or_default()
                .as_secs(),
            last_reload: reload.map(|r| Reload {
                time: format_system_time(r.time),
                ok: r.ok,
                message: r.message,
            }),
            audit_problem: control.problem(),
            degraded: control.degraded(),
            pair: pair(control),
            vendors,
            blocked_per_hour,
        }
    }
}

fn pair(control: &ControlPlane) -> Option<Pair> {
    if control.announce.is_none() && control.shared.is_none() && control.pair.is_none() {
        return None;
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let announce = control.announce.as_deref();
    let shared = control.shared.as_deref();
    let pair = control.pair.as_deref();
    Some(Pair {
        active: pair
            .filter(|p| p.watches_addresses)
            .map(|p| p.active.load(Ordering::Relaxed)),
        conntrack_event_listeners: pair.map(|p| load(&p.event_listeners)),
        verdicts_announced: announce.map(|a| load(&a.updated)),
        verdicts_not_announced: announce.map(|a| load(&a.failed) + load(&a.overflow)),
        shared_state_up: shared.map(crate::shared::SharedStats::connected),
        facts_written: shared.map(|s| load(&s.written)),
        facts_imported: shared.map(|s| load(&s.imported)),
    })
}

/// "3 d 4 h", "2 h 5 min", "42 s".
pub fn duration_text(seconds: u64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

fn pair_text(pair: Option<&Pair>) -> String {
    let Some(pair) = pair else {
        return "not configured".into();
    };
    let mut parts = Vec::new();
    if let Some(active) = pair.active {
        parts.push(if active {
            "<span class=\"ok\">active</span> (holds the virtual addresses)".to_string()
        } else {
            "standby (the other gateway holds the virtual addresses)".to_string()
        });
    }
    if let Some(listeners) = pair.conntrack_event_listeners {
        parts.push(if listeners > 0 {
            "conntrackd listening".to_string()
        } else {
            "<span class=\"bad\">nothing listens to connection events (conntrackd down?)</span>"
                .to_string()
        });
    }
    if let (Some(done), Some(lost)) = (pair.verdicts_announced, pair.verdicts_not_announced) {
        parts.push(format!(
            "block verdicts written for conntrackd: {done}{}",
            if lost > 0 {
                format!(", <span class=\"bad\">{lost} not written</span>")
            } else {
                String::new()
            }
        ));
    }
    if let Some(up) = pair.shared_state_up {
        parts.push(format!(
            "shared state (Redis): {}, {} facts written, {} imported",
            if up {
                "<span class=\"ok\">reachable</span>"
            } else {
                "<span class=\"bad\">unreachable</span>"
            },
            pair.facts_written.unwrap_or(0),
            pair.facts_imported.unwrap_or(0)
        ));
    }
    format!("<span id=\"pair\">{}</span>", parts.join("; "))
}

pub fn page(status: &Status) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\"><title>telestrip status</title><style>{STYLE}</style></head><body><h1>telestrip</h1>"
    );
    let (class, state) = if status.enforce {
        ("ok", "Enforcing: telemetry flows are blocked")
    } else {
        (
            "warn",
            "Dry run: telemetry flows are only logged, not blocked",
        )
    };
    let _ = write!(
        html,
        "<p><span id=\"state\" class=\"badge {class}\">{state}</span>"
    );
    if let Some(problem) = &status.audit_problem {
        let _ = write!(
            html,
            " <span id=\"problem\" class=\"badge bad\">{}</span>",
            escape(problem)
        );
    }
    if let Some(degraded) = &status.degraded {
        let _ = write!(
            html,
            " <span id=\"degraded\" class=\"badge warn\">Degraded: {}</span>",
            escape(degraded)
        );
    }
    html.push_str("</p><table id=\"facts\">");
    let reload = status.last_reload.as_ref().map_or_else(
        || "none since start".to_string(),
        |r| {
            format!(
                "<span class=\"{}\">{} at {}</span>: {}",
                if r.ok { "ok" } else { "bad" },
                if r.ok {
                    "succeeded"
                } else {
                    "FAILED, previous ruleset kept"
                },
                escape(&r.time),
                escape(&r.message)
            )
        },
    );
    let identity = match (&status.gateway, &status.site) {
        (Some(gateway), Some(site)) => format!(
            "<span id=\"gateway\">{}</span> at site <span id=\"site\">{}</span>",
            escape(gateway),
            escape(site)
        ),
        (Some(gateway), None) => format!("<span id=\"gateway\">{}</span>", escape(gateway)),
        (None, _) => "not named (offline audit)".into(),
    };
    for (key, value) in [
        ("Gateway", identity),
        (
            "Ruleset",
            format!(
                "<code id=\"ruleset\">{}</code> ({} rules)",
                escape(&status.ruleset),
                status.rules
            ),
        ),
        (
            "Ruleset SHA-256",
            format!("<code>{}</code>", escape(&status.ruleset_sha256)),
        ),
        ("Mode", escape(&status.mode)),
        (
            "If telestrip fails",
            if status.fail == "open" {
                "traffic passes unfiltered (fail open)".into()
            } else {
                "traffic is dropped (fail closed)".into()
            },
        ),
        (
            "Encrypted ClientHello",
            format!(
                "<span id=\"ech\">flows with real ECH: {} ({} since the start); ECH keys in DNS answers: {}</span>",
                escape(&status.ech_policy),
                status.real_ech_flows,
                if status.strip_ech {
                    format!("taken out ({} answers so far)", status.ech_answers_stripped)
                } else {
                    "left in".to_string()
                },
            ),
        ),
        (
            "Running since",
            format!(
                "{} ({})",
                escape(&status.started),
                duration_text(status.uptime_seconds)
            ),
        ),
        ("Last rule reload", reload),
        ("Gateway pair", pair_text(status.pair.as_ref())),
        ("telestrip", escape(&status.version)),
    ] {
        let _ = write!(html, "<tr><th>{key}</th><td>{value}</td></tr>");
    }
    html.push_str("</table><h2>Telemetry flows per vendor</h2>");
    if status.vendors.is_empty() {
        html.push_str("<p id=\"vendors\">No flow has matched a rule since the start.</p>");
    } else {
        html.push_str("<table id=\"vendors\"><tr><th>Vendor</th><th class=\"n\">Blocked, last hour</th><th class=\"n\">Blocked, last 24 h</th><th class=\"n\">Only logged, last 24 h</th><th class=\"n\">Blocked since start</th></tr>");
        for row in &status.vendors {
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&row.vendor),
                row.blocked_last_hour,
                row.blocked_last_day,
                row.logged_last_day,
                row.blocked_since_start
            );
        }
        html.push_str("</table>");
    }
    if status.uptime_seconds < 86_400 {
        let _ = write!(
            html,
            "<p class=\"warn\">Running for {}: the windows cover only that time.</p>",
            duration_text(status.uptime_seconds)
        );
    }
    html.push_str("<h2>Blocked flows per hour, last 24 hours</h2>");
    html.push_str(&bar_chart(
        "Blocked flows per hour",
        &status.blocked_per_hour,
    ));
    html.push_str("<p>For Prometheus: <a href=\"/metrics\">/metrics</a>. Health: <a href=\"/healthz\">/healthz</a>, <a href=\"/readyz\">/readyz</a>. As JSON: <a href=\"/status.json\">/status.json</a>.</p></body></html>\n");
    html
}
