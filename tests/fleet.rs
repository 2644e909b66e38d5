//! Prometheus as the fleet's distributed engine, with real Prometheus servers (Debian's):
//! the gateway pair of scripts/pair-lab.sh, a site Prometheus that scrapes both gateways
//! with deploy/prometheus/site.yml and its recording rules, and a central Prometheus that
//! federates the site's aggregates with deploy/prometheus/central.yml. The central server's
//! per-gateway and fleet totals must agree with the gateways' own counters.
mod common;

use std::path::Path;
use std::time::Duration;

use common::pair_lab::{wait_for, Pair, TELEMETRY};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");

/// `file` of deploy/prometheus with its targets replaced by `targets` (address, labels),
/// every interval 1 s, and `site` as external label when given.
fn config(file: &str, targets: &[(&str, &[(&str, &str)])], site: Option<&str>) -> String {
    let text = std::fs::read_to_string(Path::new(DEPLOY).join(file)).unwrap();
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    yaml["global"]["scrape_interval"] = "1s".into();
    yaml["global"]["evaluation_interval"] = "1s".into();
    if let Some(site) = site {
        yaml["global"]["external_labels"]["site"] = site.into();
    }
    let configs: Vec<serde_yaml::Value> = targets
        .iter()
        .map(|(address, labels)| {
            let mut target = serde_yaml::Mapping::new();
            target.insert("targets".into(), vec![*address].into());
            let mut label_map = serde_yaml::Mapping::new();
            for (key, value) in *labels {
                label_map.insert((*key).into(), (*value).into());
            }
            target.insert("labels".into(), label_map.into());
            target.into()
        })
        .collect();
    yaml["scrape_configs"][0]["static_configs"] = configs.into();
    serde_yaml::to_string(&yaml).unwrap()
}

/// Runs an instant query on the Prometheus at `address` (from the Redis namespace, where
/// both servers run); the samples as (labels, value).
fn query(pair: &Pair, address: &str, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let output = pair.run(
        "redis",
        &format!(
            "curl -s --max-time 2 -G http://{address}/api/v1/query --data-urlencode 'query={promql}'"
        ),
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    json["data"]["result"]
        .as_array()
        .map(|samples| {
            samples
                .iter()
                .map(|s| {
                    let value = s["value"][1].as_str().and_then(|v| v.parse().ok());
                    (s["metric"].clone(), value.unwrap_or(f64::NAN))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn single(pair: &Pair, address: &str, promql: &str) -> Option<f64> {
    query(pair, address, promql).first().map(|(_, v)| *v)
}

/// A gateway's own count of blocked flows, from its /metrics.
fn blocked_on(pair: &Pair, gateway: &str) -> f64 {
    let output = pair.run(
        gateway,
        "curl -s --max-time 2 http://127.0.0.1:9477/metrics",
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("telestrip_flows_total{") && l.contains("action=\"drop\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
#[ignore = "needs root, network namespaces, prometheus, keepalived, conntrackd and redis-server; scripts/test.sh runs it"]
fn central_prometheus_totals_agree_with_the_gateways_counters() {
    common::require(&[
        "keepalived",
        "conntrackd",
        "conntrack",
        "redis-server",
        "prometheus",
    ]);
    let mut pair = Pair::up();
    let telemetry = || {
        format!("curl -sk --max-time 2 --resolve {TELEMETRY}:443:10.79.2.10 https://{TELEMETRY}/")
    };
    // Blocked flows through A, then (A gone) through B, then A again.
    for _ in 0..3 {
        pair.run("client", &telemetry());
    }
    assert!(pair.lab(&["fail", &pair.id, "a"]).status.success());
    wait_for("B to take over", 15, || pair.master() == "b");
    for _ in 0..2 {
        pair.run("client", &telemetry());
    }
    assert!(pair.lab(&["restore", &pair.id, "a"]).status.success());
    wait_for("A to take over again", 20, || pair.master() == "a");
    let (on_a, on_b) = (blocked_on(&pair, "a"), blocked_on(&pair, "b"));
    assert!(on_a >= 3.0 && on_b >= 2.0, "A blocked {on_a}, B {on_b}");

    // The site's Prometheus and the central one, both in the Redis namespace.
    let dir = pair.dir().to_path_buf();
    for file in [
        "telestrip-alerts.yml",
        "telestrip-recording.yml",
        "telestrip-fleet-alerts.yml",
    ] {
        std::fs::copy(Path::new(DEPLOY).join(file), dir.join(file)).unwrap();
    }
    let site = config(
        "site.yml",
        &[
            (
                "10.79.3.2:9477",
                &[("gateway", "gw-a"), ("site", "pairlab")],
            ),
            (
                "10.79.3.3:9477",
                &[("gateway", "gw-b"), ("site", "pairlab")],
            ),
        ],
        Some("pairlab"),
    );
    std::fs::write(dir.join("site.yml"), site).unwrap();
    let central = config(
        "central.yml",
        &[("10.79.3.9:9090", &[("site_prometheus", "pairlab")])],
        None,
    );
    std::fs::write(dir.join("central.yml"), central).unwrap();
    for (name, listen) in [("site", "10.79.3.9:9090"), ("central", "10.79.3.9:9091")] {
        let data = dir.join(format!("prometheus-{name}"));
        pair.spawn(
            "redis",
            &format!(
                "exec timeout 300 prometheus --config.file={} --storage.tsdb.path={} --web.listen-address={listen} --log.level=warn",
                dir.join(format!("{name}.yml")).display(),
                data.display()
            ),
            None,
        );
    }

    // The central server's per-gateway and fleet totals agree with the gateways' counters.
    let per_gateway = |gateway: &str| {
        single(
            &pair,
            "10.79.3.9:9091",
            &format!(
                "sum(site_gateway_vendor:telestrip_flows_total:sum{{action=\"drop\",site=\"pairlab\",gateway=\"{gateway}\"}})"
            ),
        )
    };
    wait_for(
        "the central server to hold both gateways' totals",
        60,
        || per_gateway("gw-a") == Some(on_a) && per_gateway("gw-b") == Some(on_b),
    );
    let fleet = single(
        &pair,
        "10.79.3.9:9091",
        "sum(site_gateway_vendor:telestrip_flows_total:sum{action=\"drop\"})",
    );
    assert_eq!(fleet, Some(on_a + on_b));
    let by_rule = single(
        &pair,
        "10.79.3.9:9091",
        "sum(site_gateway_rule:telestrip_flows_total:sum{rule=\"ms-windows-diagtrack\"})",
    );
    assert_eq!(by_rule, Some(on_a + on_b), "all were the diagnostics rule");
    assert_eq!(
        single(
            &pair,
            "10.79.3.9:9091",
            "site:telestrip_enforcing:sum_up{site=\"pairlab\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        single(
            &pair,
            "10.79.3.9:9091",
            "count(site_gateway:telestrip_pair_active:max)"
        ),
        Some(2.0)
    );
    assert_eq!(
        single(
            &pair,
            "10.79.3.9:9091",
            "sum(site_gateway:telestrip_pair_active:max)"
        ),
        Some(1.0),
        "one gateway active"
    );

    // Every query of the dashboard's fleet view answers on the central server.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/telestrip-compliance.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let fleet_row = panels
        .iter()
        .position(|p| p["type"] == "row" && p["title"].as_str().unwrap().starts_with("Fleet"))
        .expect("the dashboard has a fleet row");
    let mut queries = 0;
    for panel in &panels[fleet_row + 1..] {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$site", ".*")
                .replace("$__range", "1h");
            // increase() needs two samples of the federated series: wait for them.
            wait_for(
                &format!("{}: an answer to {expr}", panel["title"]),
                20,
                || !query(&pair, "10.79.3.9:9091", &expr).is_empty(),
            );
            queries += 1;
        }
    }
    assert!(queries >= 8, "{queries} fleet queries");

    // A gateway that stops: the central server sees it as not reporting.
    let pid = std::fs::read_to_string(dir.join("b/telestrip.pid")).unwrap();
    pair.run("b", &format!("kill {}", pid.trim()));
    wait_for("the central server to see gw-b down", 30, || {
        single(
            &pair,
            "10.79.3.9:9091",
            "site_gateway:up:max{gateway=\"gw-b\"}",
        ) == Some(0.0)
    });
    assert_eq!(
        single(
            &pair,
            "10.79.3.9:9091",
            "site:telestrip_enforcing:sum_up{site=\"pairlab\"}"
        ),
        Some(1.0)
    );

    // The fleet report over both gateways' logs, each checked against its own series on
    // the site Prometheus.
    let report = pair.run(
        "redis",
        &format!(
            "{} report --fleet --format json --prometheus http://10.79.3.9:9090 {} {}",
            env!("CARGO_BIN_EXE_telestrip"),
            dir.join("a/audit").display(),
            dir.join("b/audit").display()
        ),
    );
    let json: serde_json::Value = serde_json::from_slice(&report.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&report.stderr)));
    assert_eq!(
        report.status.code(),
        Some(0),
        "{json:#}{}",
        String::from_utf8_lossy(&report.stderr)
    );
    for gateway in json["gateways"].as_array().unwrap() {
        let rows = gateway["prometheus"]["rows"].as_array().unwrap();
        let blocked: u64 = rows
            .iter()
            .map(|r| r["prometheus_blocked"].as_u64().unwrap())
            .sum();
        let expected = if gateway["gateway"] == "gw-a" {
            on_a
        } else {
            on_b
        };
        assert_eq!(blocked as f64, expected, "{gateway:#}");
        assert!(rows
            .iter()
            .all(|r| r["audit_blocked"] == r["prometheus_blocked"]));
    }
    assert_eq!(json["sites"][0]["site"], "pairlab");
    std::thread::sleep(Duration::from_millis(100));
}
