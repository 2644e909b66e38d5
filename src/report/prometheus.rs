//! The report's cross-check against a Prometheus server: what the gateway's own counters say
//! was matched in the period, next to what the audit log holds. A difference means records
//! were lost (writer overloaded, disk full) or removed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Per (vendor, rule): blocked, only logged, allowed, as Prometheus counted them.
pub type Counts = BTreeMap<(String, String), [u64; 3]>;

#[derive(Debug, Serialize)]
pub struct PrometheusCheck {
    pub url: String,
    pub selector: String,
    /// True when a counter restarted in the period (daemon restart): the figures come from
    /// `increase()`, which Prometheus extrapolates.
    pub approximate: bool,
    pub rows: Vec<CheckRow>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CheckRow {
    pub vendor: String,
    pub rule: String,
    pub audit_blocked: u64,
    pub prometheus_blocked: u64,
    pub audit_logged: u64,
    pub prometheus_logged: u64,
}

impl CheckRow {
    pub fn agrees(&self) -> bool {
        self.audit_blocked == self.prometheus_blocked && self.audit_logged == self.prometheus_logged
    }
}

fn unix(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// One element of an instant vector: its labels and value.
type Sample = (BTreeMap<String, String>, f64);

/// One instant query; the vector's elements.
fn query(
    agent: &ureq::Agent,
    base: &str,
    promql: &str,
    at: SystemTime,
) -> Result<Vec<Sample>, String> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let body = agent
        .get(&url)
        .query("query", promql)
        .query("time", format!("{:.3}", unix(at)))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .map_err(|e| format!("querying {url}: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{url} did not answer JSON: {e}"))?;
    if json["status"] != "success" {
        return Err(format!(
            "{url}: {}",
            json["error"].as_str().unwrap_or("query failed")
        ));
    }
    let results = json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(results
        .iter()
        .filter_map(|r| {
            let labels = r["metric"]
                .as_object()?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect();
            let value = r["value"][1].as_str()?.parse().ok()?;
            Some((labels, value))
        })
        .collect())
}

fn add(counts: &mut Counts, labels: &BTreeMap<String, String>, value: f64, sign: f64) {
    let (Some(vendor), Some(rule), Some(action)) = (
        labels.get("vendor"),
        labels.get("rule"),
        labels.get("action"),
    ) else {
        return;
    };
    let slot = match action.as_str() {
        "drop" | "reject" => 0,
        "log" => 1,
        _ => 2,
    };
    let entry = counts.entry((vendor.clone(), rule.clone())).or_default();
    let updated = entry[slot] as f64 + sign * value;
    entry[slot] = updated.round().max(0.0) as u64;
}

/// Matched flows per rule in [since, until) by the counters of `selector` (PromQL label
/// matchers, may be empty) on the Prometheus server at `base`; true when approximate.
pub fn counts(
    base: &str,
    selector: &str,
    since: SystemTime,
    until: SystemTime,
) -> Result<(Counts, bool), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let series = format!("telestrip_flows_total{{{selector}}}");
    let range = until
        .duration_since(since)
        .unwrap_or_default()
        .as_secs()
        .max(1);
    let resets: f64 = query(
        &agent,
        base,
        &format!("sum(resets({series}[{range}s]))"),
        until,
    )?
    .first()
    .map_or(0.0, |r| r.1);
    let mut counts = Counts::new();
    if resets > 0.0 {
        let increase = format!("sum by (vendor, rule, action) (increase({series}[{range}s]))");
        for (labels, value) in query(&agent, base, &increase, until)? {
            add(&mut counts, &labels, value, 1.0);
        }
        return Ok((counts, true));
    }
    let total = format!("sum by (vendor, rule, action) ({series})");
    for (labels, value) in query(&agent, base, &total, until)? {
        add(&mut counts, &labels, value, 1.0);
    }
    for (labels, value) in query(&agent, base, &total, since)? {
        add(&mut counts, &labels, value, -1.0);
    }
    Ok((counts, false))
}
