//! The compliance officer's evidence, checked with real parts: Prometheus's own promtool on
//! what telestrip exports and ships, a real Prometheus server scraping the real daemon on a
//! namespace gateway while real clients send telemetry through it, the audit log's chain
//! against tampering through the CLI, and the status page and HTML report as headless
//! Chromium renders them (screenshots in target/test-artifacts/).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use common::{render_page, require_tools, BODY, SERVER_V4};
use telestrip::audit::{AuditEvent, AuditWriter};
use telestrip_testkit::{audit_flow, audit_start, gateway_heartbeat, gateway_start};

fn telestrip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_telestrip"))
}

/// `telestrip audit verify FILES...`.
fn audit_verify(files: &[&Path]) -> Output {
    telestrip()
        .args(["audit", "verify"])
        .args(files)
        .output()
        .unwrap()
}

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `telestrip pcap --metrics -` over a fixture with telemetry in it.
fn offline_metrics() -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls13-curl.pcap");
    let output = telestrip()
        .args(["pcap", "-q", "--metrics", "-"])
        .arg(fixture)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn offline_metrics_follow_prometheus_conventions() {
    let metrics = offline_metrics();
    assert!(
        metrics.contains(
            "telestrip_flows_total{action=\"reject\",group=\"default\",rule=\"ms-windows-diagtrack\",vendor=\"microsoft\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("telestrip_inspected_flows_total{via=\"sni\"} 2"));
    require_tools(&["promtool"]);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(output.status.success(), "promtool: {}", text(&output));
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn shipped_prometheus_config_and_alerts_pass_promtool_and_their_tests() {
    require_tools(&["promtool"]);
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "config", "site.yml"],
        vec!["check", "config", "central.yml"],
        vec!["check", "rules", "telestrip-alerts.yml"],
        vec!["check", "rules", "telestrip-recording.yml"],
        vec!["check", "rules", "telestrip-fleet-alerts.yml"],
        vec!["test", "rules", "telestrip-alerts_test.yml"],
        vec!["test", "rules", "telestrip-recording_test.yml"],
        vec!["test", "rules", "telestrip-fleet-alerts_test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(&args)
            .current_dir(deploy("prometheus"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}",
            text(&output)
        );
    }
}

/// Every `telestrip_*` name in `text`, without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find("telestrip_") {
        let start = i + found;
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_'))
            .map_or(text.len(), |p| start + p);
        let name = &text[start..end];
        let name = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_count"))
            .or_else(|| name.strip_suffix("_sum"))
            .unwrap_or(name);
        names.insert(name.to_string());
        i = end;
    }
    names
}

/// Metrics of the packet threads of a daemon with bound queues: only inline has them (the
/// namespace tests check that it does).
const INLINE_ONLY: [&str; 4] = [
    "telestrip_dns_ech_answers_total",
    "telestrip_nfqueue_kernel_dropped_total",
    "telestrip_nfqueue_undelivered_packets_total",
    "telestrip_nfqueue_waiting_packets",
];

#[test]
fn dashboard_and_alerts_only_use_metrics_telestrip_exports() {
    let mut exported = metric_names(&offline_metrics());
    exported.extend(INLINE_ONLY.iter().map(ToString::to_string));
    exported.extend(common::PAIR_METRICS.iter().map(ToString::to_string));
    exported.extend(common::PACK_METRICS.iter().map(ToString::to_string));
    exported.extend(common::WEB_METRICS.iter().map(ToString::to_string));
    let dashboard = std::fs::read_to_string(deploy("grafana/telestrip-compliance.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(json["panels"].as_array().unwrap().len() >= 8);
    let alerts = std::fs::read_to_string(deploy("prometheus/telestrip-alerts.yml")).unwrap();
    // Recorded series are named level:metric:operation (telestrip-recording.yml); the
    // metric in the middle must exist.
    let recording = std::fs::read_to_string(deploy("prometheus/telestrip-recording.yml")).unwrap();
    let fleet = std::fs::read_to_string(deploy("prometheus/telestrip-fleet-alerts.yml")).unwrap();
    for (file, used) in [
        ("dashboard", &dashboard),
        ("alerts", &alerts),
        ("recording rules", &recording),
        ("fleet alerts", &fleet),
    ] {
        let unknown: Vec<_> = metric_names(used)
            .into_iter()
            .filter(|n| n != "telestrip_compliance" && !exported.contains(n))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics that do not exist: {unknown:?}"
        );
    }
}

fn write_log(path: &Path, flows: u16) {
    let mut writer = AuditWriter::open(path).unwrap();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200);
    writer.append(start, audit_start("abc", true));
    for i in 0..flows {
        writer.append(
            start + Duration::from_secs(u64::from(i) + 1),
            audit_flow("microsoft", "ms-windows-diagtrack", "drop", 40_000 + i),
        );
    }
    writer.append(
        start + Duration::from_secs(100),
        AuditEvent::Stop {
            gateway: None,
            site: None,
            ruleset: "abc".into(),
            packets: 10,
            events_dropped: 0,
            bypass: Default::default(),
        },
    );
    writer.commit().unwrap();
}

#[test]
fn audit_verify_names_the_first_tampered_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 4);
    let intact = audit_verify(&[&path]);
    assert_eq!(intact.status.code(), Some(0), "{}", text(&intact));
    assert!(
        text(&intact).contains("VERIFIED: 6 records (1 to 6)"),
        "{}",
        text(&intact)
    );
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let removed = [&lines[..2], &lines[3..]].concat().join("\n") + "\n";
    let edited = original.replacen("40001", "40009", 1);
    let swapped = [lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]].join("\n") + "\n";
    let truncated = original[..original.len() - 40].to_string();
    for (case, content, line) in [
        ("line removed", removed, 3),
        ("line edited", edited, 3),
        ("lines swapped", swapped, 2),
        ("file truncated", truncated, 6),
    ] {
        std::fs::write(&path, content).unwrap();
        let output = audit_verify(&[&path]);
        assert_eq!(output.status.code(), Some(1), "{case}: {}", text(&output));
        let expected = format!("BROKEN: {}:{line}:", path.display());
        assert!(
            text(&output).contains(&expected),
            "{case}: {}",
            text(&output)
        );
    }
    let missing = telestrip()
        .args(["audit", "verify", "/nonexistent/audit.jsonl"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("/nonexistent/audit.jsonl"));
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn the_html_report_shows_the_evidence_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_log(&log, 3);
    let page = dir.path().join("report.html");
    let output = telestrip()
        .args([
            "report",
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-02",
            "--format",
            "html",
            "-o",
        ])
        .arg(&page)
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let text_report = telestrip().arg("report").arg(&log).output().unwrap();
    let shown = text(&text_report);
    assert!(
        shown.contains("Audit chain: VERIFIED, 5 records"),
        "{shown}"
    );
    assert!(shown.contains("ms-windows-diagtrack"), "{shown}");
    require_tools(&["chromium"]);
    let dom = render_page(None, &format!("file://{}", page.display()), "report");
    assert!(dom.contains("Audit chain verified"), "{dom}");
    assert!(
        dom.contains("<td>microsoft</td><td class=\"n\">3</td>"),
        "{dom}"
    );
    assert!(dom.contains("2026-11-01T00:00:00.000000Z"));
}

/// Scrape target and Prometheus inside the gateway namespace, one-second scrapes.
const PROMETHEUS_YML: &str = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: telestrip\n    static_configs:\n      - targets: ['127.0.0.1:9477']\n";

use common::prometheus_value;

/// Waits (up to 20 s) until Prometheus has `query` at `expected`; the last value seen.
fn wait_for_value(lab: &telestrip::lab::Lab, query: &str, expected: f64) -> Option<f64> {
    common::prometheus_wait(lab, query, |value| value == expected)
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn prometheus_scraping_the_gateway_stores_what_the_traffic_did() {
    common::require(&["prometheus", "chromium"]);
    let mut lab = common::lab();
    let dir = lab.dir.path().to_path_buf();
    let audit = lab.audit_dir().unwrap().join("audit.jsonl");
    let key = dir.join("audit.key");
    std::fs::write(&key, "a lab secret of more than 16 bytes\n").unwrap();
    lab.start_telestrip(
        &format!(
            "queues: [0]\nfail: open\nlisten: 127.0.0.1:9477\naudit:\n  path: {}\n  pseudonymize_key_file: {}\n  heartbeat_seconds: 1\n",
            audit.display(),
            key.display()
        ),
        "open",
    )
    .unwrap();
    std::fs::write(dir.join("prometheus.yml"), PROMETHEUS_YML).unwrap();
    lab.spawn_in_gateway(&format!(
        "prometheus --config.file={0}/prometheus.yml --storage.tsdb.path={0}/tsdb --web.listen-address=127.0.0.1:9090 --log.level=warn",
        dir.display()
    ))
    .unwrap();
    assert_eq!(
        wait_for_value(&lab, "up{job=\"telestrip\"}", 1.0),
        Some(1.0),
        "Prometheus never scraped telestrip"
    );
    // Telemetry: 3 TLS connections and 2 DNS queries, in parallel (each waits for its
    // timeout); ordinary traffic: 2 HTTPS downloads that must work.
    let blocked = lab.client(&format!(
        "for i in 1 2 3; do curl -sk --max-time 2 --resolve v10.events.data.microsoft.com:443:{SERVER_V4} https://v10.events.data.microsoft.com/ & done; \
         for i in 1 2; do dig +time=1 +tries=1 @{SERVER_V4} v10.events.data.microsoft.com & done; wait"
    ));
    assert!(blocked.status.success() || blocked.status.code().is_some());
    for _ in 0..2 {
        let allowed = lab.https("www.example.org", SERVER_V4, "");
        assert_eq!(String::from_utf8_lossy(&allowed.stdout), BODY);
    }
    let query = "sum(telestrip_flows_total{rule=\"ms-windows-diagtrack\",action=\"reject\"})";
    assert_eq!(wait_for_value(&lab, query, 5.0), Some(5.0), "{}", lab.log());
    assert_eq!(
        wait_for_value(&lab, "telestrip_inspected_flows_total{via=\"sni\"}", 5.0),
        Some(5.0),
        "3 blocked + 2 allowed TLS flows"
    );
    assert_eq!(
        prometheus_value(&lab, "telestrip_inspected_flows_total{via=\"dns\"}"),
        Some(2.0)
    );
    assert_eq!(prometheus_value(&lab, "telestrip_enforcing"), Some(1.0));
    let version = lab.gateway("curl -s http://127.0.0.1:9477/status.json");
    let status: serde_json::Value = serde_json::from_slice(&version.stdout).unwrap();
    let ruleset = status["ruleset"].as_str().unwrap().to_string();
    assert_eq!(
        prometheus_value(
            &lab,
            &format!("telestrip_ruleset_info{{version=\"{ruleset}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        prometheus_value(&lab, "histogram_count(telestrip_verdict_latency_seconds)")
            .or_else(|| prometheus_value(&lab, "telestrip_verdict_latency_seconds_count"))
            .map(|n| n > 0.0),
        Some(true)
    );
    let page = render_page(Some(&lab.gateway), "http://127.0.0.1:9477/", "status-page");
    assert!(page.contains("Enforcing"), "{page}");
    assert!(page.contains(&ruleset));
    assert!(
        page.contains("<td>microsoft</td><td class=\"n\">5</td><td class=\"n\">5</td>"),
        "{page}"
    );
    let live = lab.gateway("curl -sf http://127.0.0.1:9477/metrics");
    let live_names = metric_names(&String::from_utf8_lossy(&live.stdout));
    for name in INLINE_ONLY {
        assert!(
            live_names.contains(name),
            "{name} missing from the daemon's /metrics"
        );
    }
    assert!(lab
        .gateway("curl -sf http://127.0.0.1:9477/healthz")
        .status
        .success());
    assert!(lab
        .gateway("curl -sf http://127.0.0.1:9477/readyz")
        .status
        .success());
    // The control plane is not reachable from the client side of the gateway.
    assert!(!lab.client_ok("curl -s --max-time 1 http://10.78.1.1:9477/metrics"));
    lab.stop_daemon("TERM");
    let verify = audit_verify(&[&audit]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let log = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"stop"));
    assert!(kinds.contains(&"heartbeat"));
    let flows: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "flow").collect();
    assert_eq!(flows.len(), 5, "{log}");
    // Pseudonymised: the same client, one keyed hash; its address is nowhere in the log.
    let clients: BTreeSet<&str> = flows.iter().filter_map(|f| f["client"].as_str()).collect();
    assert_eq!(clients.len(), 1);
    assert!(clients.iter().all(|c| c.starts_with("p:")));
    assert!(!log.contains("10.78.1.2"));
    // The report, cross-checked with what Prometheus stored of the gateway's counters.
    let report = lab.gateway(&format!(
        "{} report --prometheus http://127.0.0.1:9090 {}",
        env!("CARGO_BIN_EXE_telestrip"),
        audit.display()
    ));
    let shown = text(&report);
    assert_eq!(report.status.code(), Some(0), "{shown}");
    assert!(shown.contains("Audit chain: VERIFIED"), "{shown}");
    assert!(shown.contains("stopped cleanly"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.contains("ms-windows-diagtrack") && l.split_whitespace().nth(2) == Some("5")),
        "{shown}"
    );
    let cross_check: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("Cross-check with Prometheus"))
        .take_while(|l| !l.is_empty())
        .filter(|l| l.contains("ms-windows-diagtrack"))
        .collect();
    assert_eq!(cross_check.len(), 1, "{shown}");
    let columns: Vec<&str> = cross_check[0].split_whitespace().collect();
    assert_eq!(columns[2..], ["5", "5", "0", "0", "yes"], "{shown}");

    // Rotated while stopped, restarted: the chain goes on in the new file.
    let rotated = audit.with_extension("jsonl.1");
    std::fs::rename(&audit, &rotated).unwrap();
    lab.start_daemon(&std::fs::read_to_string(dir.join("telestrip.yaml")).unwrap())
        .unwrap();
    let blocked = lab.https("v10.events.data.microsoft.com", SERVER_V4, "");
    assert!(
        common::refused(&blocked),
        "curl exit {}",
        common::code(&blocked)
    );
    lab.stop_daemon("TERM");
    let verify = audit_verify(&[&rotated, &audit]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("in 2 file(s)"), "{}", text(&verify));
    let resumed = std::fs::read_to_string(&audit).unwrap();
    let first: serde_json::Value = serde_json::from_str(resumed.lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "start", "{resumed}");
    assert_eq!(
        first["seq"],
        log.lines().count() + 1,
        "the numbering goes on"
    );
    assert!(resumed.contains("\"kind\":\"flow\""), "{resumed}");
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn a_burst_of_matches_right_before_sigterm_is_all_in_the_audit_log() {
    let mut lab = common::lab();
    let dir = lab.dir.path().to_path_buf();
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("acme.yaml"),
        "vendor: acme\nrules:\n  - id: acme-flood\n    action: reject\n    domains: [\"*.flood.example\"]\n",
    )
    .unwrap();
    let audit = lab.audit_dir().unwrap().join("audit.jsonl");
    lab.start_telestrip(
        &format!(
            "queues: [0]\nrules: {}\nlisten: null\naudit:\n  path: {}\n",
            rules.display(),
            audit.display()
        ),
        "open",
    )
    .unwrap();
    const QUERIES: usize = 400;
    let batch = dir.join("queries.txt");
    let names: Vec<String> = (0..QUERIES)
        .map(|i| format!("q{i}.flood.example"))
        .collect();
    std::fs::write(&batch, names.join("\n") + "\n").unwrap();
    // Rejected queries get the gateway's NXDOMAIN at once, so the burst takes well under a
    // second; the daemon is stopped the moment it ends.
    let burst = lab.client(&format!(
        "dig +tries=1 +time=1 @{SERVER_V4} -f {} | grep -c 'status: NXDOMAIN'",
        batch.display()
    ));
    assert_eq!(
        String::from_utf8_lossy(&burst.stdout).trim(),
        QUERIES.to_string(),
        "every query got its NXDOMAIN"
    );
    lab.stop_daemon("TERM");
    let stdout_events = lab
        .events()
        .iter()
        .filter(|e| e["rule"] == "acme-flood")
        .count();
    assert_eq!(stdout_events, QUERIES);
    let log = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flows = records.iter().filter(|r| r["kind"] == "flow").count();
    assert_eq!(flows, QUERIES);
    let stop = records.last().unwrap();
    assert_eq!(stop["kind"], "stop");
    assert_eq!(stop["events_dropped"], 0);
    let verify = audit_verify(&[&audit]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn the_report_counts_attempts_to_get_around_the_filter() {
    let mut lab = common::lab();
    let audit = lab.audit_dir().unwrap().join("audit.jsonl");
    lab.start_telestrip(
        &format!(
            "queues: [0]\nfail: open\nlisten: null\naudit:\n  path: {}\n  heartbeat_seconds: 1\n",
            audit.display()
        ),
        "open",
    )
    .unwrap();
    // Telemetry over QUIC once, and an HTTPS-record query for a telemetry name once.
    let quic = lab.quic("v10.events.data.microsoft.com", SERVER_V4, "");
    assert_eq!(
        quic.status.code(),
        Some(28),
        "the QUIC attempt was not blocked"
    );
    lab.client(&format!(
        "dig +time=1 +tries=1 @{SERVER_V4} v10.events.data.microsoft.com HTTPS"
    ));
    lab.stop_daemon("TERM");
    let report = telestrip()
        .args(["report", "--format", "json"])
        .arg(&audit)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(
        json["bypass_attempts"],
        serde_json::json!({"quic": 1, "svcb": 1}),
        "{json}"
    );
    let shown = text(&telestrip().arg("report").arg(&audit).output().unwrap());
    assert!(
        shown.contains("Attempts to get around the filter: 1 quic, 1 svcb"),
        "{shown}"
    );
}

/// A day of one gateway's log, written as the daemon writes it: a start record, a heartbeat
/// a minute while it runs (`minutes` of them from `from` minutes after the day's start),
/// `flows` matched flows with `action`, no stop record (still running) unless `stop`.
#[allow(clippy::too_many_arguments)]
fn gateway_day(
    path: &Path,
    gateway: &str,
    site: &str,
    enforce: bool,
    from: u64,
    minutes: u64,
    flows: u16,
    action: &str,
) {
    let day = SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200);
    let mut writer = AuditWriter::open(path).unwrap();
    writer.append(
        day + Duration::from_secs(from * 60),
        gateway_start(gateway, site, enforce),
    );
    for minute in 1..=minutes {
        let at = day + Duration::from_secs((from + minute) * 60);
        if minute <= u64::from(flows) {
            writer.append(
                at,
                audit_flow("microsoft", "ms-windows-diagtrack", action, minute as u16),
            );
        }
        writer.append(at, gateway_heartbeat(gateway, site, minute));
    }
    writer.commit().unwrap();
}

#[test]
#[ignore = "needs chromium for the HTML page: scripts/test.sh installs it and runs this"]
fn fleet_report_accounts_for_every_gateway_and_site() {
    let dir = tempfile::tempdir().unwrap();
    // As the central rsyslog files them: one directory per gateway.
    let central = dir.path().join("fleet");
    for gateway in ["gw-a", "gw-b", "gw-c", "gw-d"] {
        std::fs::create_dir_all(central.join(gateway)).unwrap();
    }
    let day = 24 * 60;
    // Site hq: gw-a enforces all day; gw-b only the first half of it.
    gateway_day(
        &central.join("gw-a/audit.jsonl"),
        "gw-a",
        "hq",
        true,
        0,
        day,
        5,
        "drop",
    );
    gateway_day(
        &central.join("gw-b/audit.jsonl"),
        "gw-b",
        "hq",
        true,
        0,
        day / 2,
        3,
        "drop",
    );
    // Site branch: gw-c runs all day in dry run; gw-d's chain was tampered with.
    gateway_day(
        &central.join("gw-c/audit.jsonl"),
        "gw-c",
        "branch",
        false,
        0,
        day,
        4,
        "log",
    );
    // gw-a took a signed rule pack at noon (recorded at its next start here, as after a
    // restart: the report places it by its switch time).
    let mut writer = AuditWriter::open(&central.join("gw-a/audit.jsonl")).unwrap();
    writer.append(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200 + 86_400),
        AuditEvent::RulesUpdate {
            generation: 3,
            ruleset_version: 8,
            previous_version: Some(7),
            key_id: "ABCDEF0123456789".into(),
            source: "https://rules.example.org/".into(),
            issued: "2026-10-31T00:00:00Z".into(),
            expires: "2026-12-01T00:00:00Z".into(),
            accepted: "2026-11-01T12:00:00Z".into(),
            switched: Some("2026-11-01T12:00:00Z".into()),
            switched_by: "update".into(),
            entries: 200,
            added: 2,
            removed: 0,
            added_sample: vec!["new.example.net".into()],
            removed_sample: vec![],
            ruleset: "r2".into(),
        },
    );
    writer.commit().unwrap();
    let d = central.join("gw-d/audit.jsonl");
    gateway_day(&d, "gw-d", "branch", true, 0, 60, 2, "drop");
    let edited = std::fs::read_to_string(&d).unwrap().replacen(
        "\"action\":\"drop\"",
        "\"action\":\"log\"",
        1,
    );
    std::fs::write(&d, edited).unwrap();

    let run = |format: &str| {
        telestrip()
            .args([
                "report",
                "--fleet",
                "--since",
                "2026-11-01",
                "--until",
                "2026-11-02",
            ])
            .args(["--format", format])
            .arg(&central)
            .output()
            .unwrap()
    };
    let output = run("json");
    assert_eq!(
        output.status.code(),
        Some(1),
        "a broken chain: {}",
        text(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let gateways = report["gateways"].as_array().unwrap();
    let names: Vec<&str> = gateways
        .iter()
        .map(|g| g["gateway"].as_str().unwrap())
        .collect();
    // Those needing attention first (by site, then name), the healthy one last.
    assert_eq!(names, ["gw-c", "gw-d", "gw-b", "gw-a"], "{report:#}");
    let row = |name: &str| gateways.iter().find(|g| g["gateway"] == name).unwrap();
    assert_eq!(row("gw-a")["attention"].as_array().unwrap().len(), 0);
    assert_eq!(row("gw-a")["rule_updates"][0]["ruleset_version"], 8);
    assert_eq!(row("gw-b")["rule_updates"].as_array().unwrap().len(), 0);
    assert_eq!(row("gw-a")["blocked"], 5);
    assert!((row("gw-b")["coverage"].as_f64().unwrap() - 0.5).abs() < 0.01);
    assert_eq!(row("gw-c")["enforcing"], 0.0);
    assert_eq!(row("gw-d")["chain_verified"], false);
    let site = |name: &str| {
        report["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["site"] == name)
            .unwrap()["covered"]
            .as_f64()
            .unwrap()
    };
    assert!((site("hq") - 1.0).abs() < 0.01, "gw-a covered hq all day");
    // gw-d enforced one hour of the day before its chain broke; gw-c never enforced.
    assert!(site("branch") < 0.05, "{}", site("branch"));
    let microsoft = &report["vendors"][0];
    assert_eq!(microsoft["vendor"], "microsoft");
    // gw-d's records after the edited line are not counted: the chain stops there.
    assert_eq!(microsoft["blocked"], 5 + 3);
    assert_eq!(microsoft["logged"], 4);

    let shown = text(&run("text"));
    assert!(
        shown.contains("4 gateways at 2 sites; 3 need attention"),
        "{shown}"
    );
    assert!(shown.contains("chain broken"), "{shown}");
    assert!(
        shown.contains("rules 2026-11-01T12:00:00Z update: ruleset version 8 (was 7)"),
        "{shown}"
    );

    let page = dir.path().join("fleet.html");
    let output = telestrip()
        .args(["report", "--fleet", "--format", "html", "-o"])
        .arg(&page)
        .arg(&central)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    require_tools(&["chromium"]);
    let dom = render_page(None, &format!("file://{}", page.display()), "fleet-report");
    assert!(
        dom.contains("<td>gw-d</td><td>branch</td><td class=\"bad\">BROKEN</td>"),
        "{dom}"
    );
    assert!(dom.contains("<td>hq</td><td class=\"ok\">"), "{dom}");
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn the_pseudonymisation_key_rotates_on_sighup_and_a_compromised_epoch_is_reported() {
    common::require(&[]);
    let mut lab = common::lab();
    let dir = lab.dir.path().to_path_buf();
    let audit = lab.audit_dir().unwrap().join("audit.jsonl");
    let key = dir.join("pseudonym.key");
    let (first, second) = (
        "the first lab key, 32 bytes long",
        "the second lab key, as long too!",
    );
    let (first_epoch, second_epoch) = (
        telestrip::audit::key_epoch(first.as_bytes()),
        telestrip::audit::key_epoch(second.as_bytes()),
    );
    std::fs::write(&key, format!("{first}\n")).unwrap();
    let config = |compromised: &str| {
        format!(
            "queues: [0]\nfail: open\naudit:\n  path: {}\n  pseudonymize_key_file: {}\n  heartbeat_seconds: 1\n{compromised}",
            audit.display(),
            key.display()
        )
    };
    lab.start_telestrip(&config(""), "open").unwrap();
    assert!(
        lab.log()
            .contains(&format!("pseudonymised (key epoch {first_epoch})")),
        "{}",
        lab.log()
    );
    let blocked = "v10.events.data.microsoft.com";
    for _ in 0..2 {
        assert!(common::refused(&lab.https(blocked, SERVER_V4, "")));
    }
    // The key file replaced and the old key reported compromised, then SIGHUP: no restart.
    std::fs::write(&key, format!("{second}\n")).unwrap();
    let listed = format!("  compromised_key_epochs: [{first_epoch}]\n");
    std::fs::write(dir.join("telestrip.yaml"), config(&listed)).unwrap();
    let pid = lab.daemon_pid().unwrap();
    common::sh(&format!("kill -HUP {pid}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.log().contains("pseudonymisation key rotated") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lab.log().contains(&format!(
            "pseudonymisation key rotated: epoch {first_epoch} -> {second_epoch}"
        )),
        "{}",
        lab.log()
    );
    assert!(common::refused(&lab.https(blocked, SERVER_V4, "")));
    common::events_when(&lab, |events| events.len() >= 3);
    lab.stop_daemon("TERM");

    let verify = audit_verify(&[&audit]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flows: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["kind"] == "flow")
        .map(|r| {
            (
                r["key_epoch"].as_str().unwrap(),
                r["client"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(flows.len(), 3, "{records:?}");
    assert_eq!(
        flows.iter().map(|f| f.0).collect::<Vec<_>>(),
        [first_epoch.as_str(), &first_epoch, &second_epoch]
    );
    // One client: one pseudonym per key.
    assert_eq!(flows[0].1, flows[1].1);
    assert_ne!(flows[1].1, flows[2].1);
    let start = records.iter().find(|r| r["kind"] == "start").unwrap();
    assert_eq!(start["key_epoch"], first_epoch.as_str());
    let rotation = records
        .iter()
        .find(|r| r["kind"] == "pseudonym_key")
        .unwrap();
    assert_eq!(rotation["key_epoch"], second_epoch.as_str());
    assert_eq!(rotation["previous_key_epoch"], first_epoch.as_str());
    assert_eq!(rotation["compromised_key_epochs"][0], first_epoch.as_str());

    let report = telestrip().arg("report").arg(&audit).output().unwrap();
    let shown = text(&report);
    assert_eq!(report.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!(
            "key epoch {first_epoch}: 2 flow records, 1 clients"
        )) && shown.contains("COMPROMISED (recorded"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "key epoch {second_epoch}: 1 flow records, 1 clients"
        )),
        "{shown}"
    );
    assert!(shown.contains("(key compromised)"), "{shown}");

    // A daemon (and config check) refuses to start with a key listed as compromised.
    std::fs::write(&key, format!("{first}\n")).unwrap();
    let check = telestrip()
        .args(["config", "check"])
        .arg(dir.join("telestrip.yaml"))
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        text(&check).contains(&format!(
            "(key epoch {first_epoch}) is listed in audit.compromised_key_epochs"
        )),
        "{}",
        text(&check)
    );
    let refused = lab.start_daemon(&config(&listed));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("is listed in audit.compromised_key_epochs")),
        "{refused:?}"
    );
}
