use std::path::Path;

use super::*;
use crate::audit::AuditWriter;
use telestrip_testkit::{audit_flow, audit_start};

const DAY: u64 = 86_400;
/// 2026-11-01T00:00:00Z.
const NOV_1: u64 = 1_793_491_200;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOV_1 + seconds)
}

fn flow(vendor: &str, rule: &str, action: &str) -> AuditEvent {
    audit_flow(vendor, rule, action, 40_000)
}

fn heartbeats(writer: &mut AuditWriter, from: u64, to: u64) {
    for t in (from..to).step_by(60) {
        writer.append(
            at(t),
            AuditEvent::Heartbeat {
                gateway: None,
                site: None,
                ruleset: "r".into(),
                packets: 0,
                events_dropped: 0,
                bypass: Default::default(),
            },
        );
    }
}

fn stop(writer: &mut AuditWriter, time: u64, events_dropped: u64) {
    writer.append(
        at(time),
        AuditEvent::Stop {
            gateway: None,
            site: None,
            ruleset: "r".into(),
            packets: 0,
            events_dropped,
            bypass: Default::default(),
        },
    );
}

/// Two days: day 1 two runs with a restart gap of an hour, a reload, flows on both days.
fn write_log(path: &Path) {
    let mut w = AuditWriter::open(path).unwrap();
    w.append(at(0), audit_start("v1", true));
    w.append(at(10), flow("microsoft", "ms-diagtrack", "drop"));
    w.append(at(20), flow("microsoft", "ms-diagtrack", "drop"));
    w.append(at(30), flow("microsoft", "ms-allowed", "allow"));
    heartbeats(&mut w, 60, 3600);
    w.append(
        at(3600),
        AuditEvent::Reload {
            ok: true,
            ruleset: "v2".into(),
            sha256: "sha-v2".into(),
            error: None,
        },
    );
    w.append(
        at(3601),
        AuditEvent::Reload {
            ok: false,
            ruleset: "v2".into(),
            sha256: "sha-v2".into(),
            error: Some("x.yaml:3:1: bad".into()),
        },
    );
    w.append(at(3700), flow("google", "g-metrics", "reject"));
    stop(&mut w, 3800, 0);
    // Down for an hour, then a dry-run day.
    w.append(at(7400), audit_start("v2", false));
    heartbeats(&mut w, 7460, DAY + 100);
    w.append(at(DAY + 100), flow("google", "g-metrics", "log"));
    stop(&mut w, DAY + 200, 4);
    w.commit().unwrap();
}

fn report_of(period: Period) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path);
    build(&[path], period).unwrap()
}

#[test]
fn counts_per_rule_and_vendor_over_the_whole_log() {
    let report = report_of(Period::default());
    assert!(report.chain.verified, "{:?}", report.chain.broken);
    let rows: Vec<(&str, &str, u64, u64, u64)> = report
        .rules
        .iter()
        .map(|r| {
            (
                r.vendor.as_str(),
                r.rule.as_str(),
                r.blocked,
                r.logged,
                r.allowed,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("google", "g-metrics", 1, 1, 0),
            ("microsoft", "ms-allowed", 0, 0, 1),
            ("microsoft", "ms-diagtrack", 2, 0, 0),
        ]
    );
    let diagtrack = &report.rules[2];
    assert_eq!(diagtrack.first_seen, "2026-11-01T00:00:10.000000Z");
    assert_eq!(diagtrack.last_seen, "2026-11-01T00:00:20.000000Z");
    assert_eq!(report.vendors.len(), 2);
    assert_eq!(report.events_dropped, 4);
    assert_eq!(report.blocked_per_day, [("2026-11-01".to_string(), 3)]);
}

#[test]
fn a_period_counts_only_its_flows_but_knows_the_state_at_its_start() {
    let report = report_of(Period {
        since: Some(at(DAY)),
        until: Some(at(2 * DAY)),
    });
    assert_eq!(report.rules.len(), 1);
    assert_eq!((report.rules[0].blocked, report.rules[0].logged), (0, 1));
    // The ruleset loaded the day before was in force during the period.
    assert_eq!(report.rulesets.len(), 1);
    assert_eq!(report.rulesets[0].ruleset, "v2");
    assert_eq!(report.runs.len(), 1);
    assert!(!report.runs[0].enforce);
}

#[test]
fn runs_rulesets_and_downtime_are_reported() {
    let report = report_of(Period::default());
    let sets: Vec<&str> = report.rulesets.iter().map(|r| r.ruleset.as_str()).collect();
    // The failed reload changed nothing; the restart kept v2.
    assert_eq!(sets, ["v1", "v2"]);
    assert_eq!(report.rulesets[0].until, "2026-11-01T01:00:00.000000Z");
    assert_eq!(report.runs.len(), 2);
    assert!(report.runs.iter().all(|r| r.stopped_cleanly));
    // Down from 3800 s to 7400 s of a log lasting DAY + 200 s.
    let expected = 1.0 - 3600.0 / (DAY + 200) as f64;
    assert!(
        (report.coverage - expected).abs() < 1e-3,
        "{}",
        report.coverage
    );
    let text = text(&report);
    assert!(text.contains("DRY RUN"), "{text}");
    assert!(
        text.contains("WARNING: 4 matched flows were not written"),
        "{text}"
    );
}

#[test]
fn a_silence_inside_a_run_is_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut w = AuditWriter::open(&path).unwrap();
    w.append(at(0), audit_start("v1", true));
    heartbeats(&mut w, 60, 600);
    // Ten minutes without a heartbeat: the daemon was hung or the records were removed.
    heartbeats(&mut w, 1200, 1800);
    stop(&mut w, 1800, 0);
    w.commit().unwrap();
    let report = build(&[path], Period::default()).unwrap();
    assert_eq!(report.runs[0].silences.len(), 1);
    assert!(report.coverage < 0.7, "{}", report.coverage);
}

#[test]
fn a_broken_chain_is_reported_and_stops_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path);
    let text_of_log = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text_of_log.lines().collect();
    lines.remove(2);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let report = build(&[path], Period::default()).unwrap();
    assert!(!report.chain.verified);
    assert!(report.chain.broken.as_deref().unwrap().contains(":3:"));
    assert_eq!(report.rules.iter().map(|r| r.blocked).sum::<u64>(), 1);
    assert!(html(&report).contains("Audit chain BROKEN"));
}

#[test]
fn the_html_page_is_standalone_and_escapes_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut w = AuditWriter::open(&path).unwrap();
    w.append(at(0), audit_start("v1", true));
    w.append(at(1), flow("<b>evil</b>", "r1", "drop"));
    stop(&mut w, 2, 0);
    w.commit().unwrap();
    let page = html(&build(&[path], Period::default()).unwrap());
    assert!(page.contains("&lt;b&gt;evil&lt;/b&gt;"));
    assert!(!page.contains("<b>evil</b>"));
    assert!(!page.contains("<script") && !page.contains("src=\"http"));
    assert!(page.contains("Audit chain verified"));
}

#[test]
fn dates_and_times_parse() {
    assert_eq!(parse_time("2026-11-01").unwrap(), at(0));
    assert_eq!(parse_time("2026-11-01T00:01:00Z").unwrap(), at(60));
    let error = parse_time("yesterday").unwrap_err();
    assert!(error.contains("2026-11-01"), "{error}");
}

#[test]
fn an_unreachable_prometheus_is_said_not_silently_skipped() {
    let mut report = report_of(Period::default());
    check_prometheus(&mut report, "http://127.0.0.1:1", "");
    let check = report.prometheus.as_ref().unwrap();
    assert!(
        check.error.as_deref().unwrap().contains("127.0.0.1:1"),
        "{check:?}"
    );
    assert!(text(&report)
        .contains("Cross-check with Prometheus at http://127.0.0.1:1:\n  not possible:"));
}

fn heartbeat_with(writer: &mut AuditWriter, time: u64, bypass: &[(&str, u64)]) {
    writer.append(
        at(time),
        AuditEvent::Heartbeat {
            gateway: None,
            site: None,
            ruleset: "r".into(),
            packets: 0,
            events_dropped: 0,
            bypass: bypass.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        },
    );
}

#[test]
fn bypass_attempts_are_counted_per_run_and_only_inside_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut w = AuditWriter::open(&path).unwrap();
    // Run 1: 2 quic by t=60, 5 quic and 1 ech by t=120, then killed (no stop record).
    w.append(at(0), audit_start("v1", true));
    heartbeat_with(&mut w, 60, &[("quic", 2)]);
    heartbeat_with(&mut w, 120, &[("quic", 5), ("ech", 1)]);
    // Run 2 starts from zero again: 3 doh by its stop.
    w.append(at(200), audit_start("v1", true));
    heartbeat_with(&mut w, 260, &[("doh", 1)]);
    w.append(
        at(300),
        AuditEvent::Stop {
            gateway: None,
            site: None,
            ruleset: "r".into(),
            packets: 0,
            events_dropped: 0,
            bypass: [("doh".to_string(), 3)].into(),
        },
    );
    w.commit().unwrap();
    let whole = build(std::slice::from_ref(&path), Period::default()).unwrap();
    let expected: BTreeMap<String, u64> =
        [("doh".into(), 3), ("ech".into(), 1), ("quic".into(), 5)].into();
    assert_eq!(whole.bypass_attempts, expected);
    assert!(
        text(&whole).contains("Attempts to get around the filter: 3 doh, 1 ech, 5 quic"),
        "{}",
        text(&whole)
    );
    // From t=90: run 1 had 2 quic before, so 3 quic and 1 ech inside; run 2 all of it.
    let late = build(
        std::slice::from_ref(&path),
        Period {
            since: Some(at(90)),
            until: None,
        },
    )
    .unwrap();
    let expected: BTreeMap<String, u64> =
        [("doh".into(), 3), ("ech".into(), 1), ("quic".into(), 3)].into();
    assert_eq!(late.bypass_attempts, expected);
    assert!(html(&late).contains("Attempts to get around the filter: 3 doh, 1 ech, 3 quic"));
    // An old log without the counters says none.
    let old_path = dir.path().join("old.jsonl");
    write_log(&old_path);
    let old = build(&[old_path], Period::default()).unwrap();
    assert!(old.bypass_attempts.is_empty(), "{:?}", old.bypass_attempts);
    assert!(text(&old).contains("Attempts to get around the filter: none"));
}

fn rules_update(generation: u64, version: u64, switched: &str, by: &str) -> AuditEvent {
    AuditEvent::RulesUpdate {
        generation,
        ruleset_version: version,
        previous_version: version.checked_sub(1),
        key_id: "ABCDEF0123456789".into(),
        source: "https://rules.example.org/".into(),
        issued: "2026-10-30T00:00:00Z".into(),
        expires: "2026-12-30T00:00:00Z".into(),
        accepted: switched.into(),
        switched: Some(switched.into()),
        switched_by: by.into(),
        entries: 100,
        added: 3,
        removed: 1,
        added_sample: vec!["a.example.net".into()],
        removed_sample: vec![],
        ruleset: "r".into(),
    }
}

#[test]
fn signed_rule_updates_are_listed_once_each_within_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut w = AuditWriter::open(&path).unwrap();
    w.append(at(0), audit_start("v1", true));
    // Accepted before the period; recorded again by the start inside it.
    w.append(at(10), rules_update(1, 7, "2026-11-01T00:00:10Z", "update"));
    w.append(at(DAY), audit_start("v1", true));
    w.append(
        at(DAY),
        rules_update(1, 7, "2026-11-01T00:00:10Z", "update"),
    );
    w.append(
        at(DAY + 60),
        rules_update(2, 8, "2026-11-02T00:01:00Z", "update"),
    );
    w.append(
        at(DAY + 120),
        rules_update(1, 7, "2026-11-02T00:02:00Z", "rollback"),
    );
    // The same switch recorded again (a reload) is not a new one.
    w.append(
        at(DAY + 180),
        rules_update(1, 7, "2026-11-02T00:02:00Z", "rollback"),
    );
    w.commit().unwrap();
    let report = build(
        &[path],
        Period {
            since: Some(at(DAY)),
            until: Some(at(2 * DAY)),
        },
    )
    .unwrap();
    assert!(report.chain.verified, "{:?}", report.chain);
    let listed: Vec<(u64, &str)> = report
        .rule_updates
        .iter()
        .map(|u| (u.ruleset_version, u.how.as_str()))
        .collect();
    assert_eq!(listed, [(8, "update"), (7, "rollback")]);
    let text = text(&report);
    assert!(
        text.contains("2026-11-02T00:01:00Z update: ruleset version 8 (was 7), generation 2, key ABCDEF0123456789"),
        "{text}"
    );
    assert!(html(&report).contains("<ul id=\"rule-updates\">"));
}

/// A flow record from `client` in `group`, let pass by `profile` when given.
fn grouped_flow(
    client: &str,
    group: &str,
    rule_action: &str,
    action: &str,
    profile: Option<&str>,
) -> AuditEvent {
    let mut event = audit_flow("microsoft", "ms-diagtrack", action, 40_000);
    if let AuditEvent::Flow {
        client: c,
        group: g,
        profile: p,
        rule_action: r,
        rule,
        ..
    } = &mut event
    {
        *c = client.into();
        *g = group.into();
        *p = profile.map(str::to_string);
        *r = rule_action.into();
        if profile.is_some() {
            *rule = "ms-defender".into();
        }
    }
    event
}

#[test]
fn groups_profiles_and_the_clients_with_most_attempts_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut w = AuditWriter::open(&path).unwrap();
    w.append(at(0), audit_start("v1", true));
    for i in 0..5 {
        w.append(
            at(10 + i),
            grouped_flow("p:aaaa", "default", "drop", "drop", None),
        );
    }
    w.append(at(20), grouped_flow("p:bbbb", "pilot", "drop", "log", None));
    w.append(at(21), grouped_flow("p:bbbb", "pilot", "drop", "log", None));
    w.append(
        at(22),
        grouped_flow("p:cccc", "edr", "allow", "allow", Some("defender")),
    );
    w.commit().unwrap();
    let report = build(&[path], Period::default()).unwrap();
    let groups: Vec<(&str, u64, u64, u64, u64)> = report
        .groups
        .iter()
        .map(|g| {
            (
                g.group.as_str(),
                g.blocked,
                g.logged,
                g.allowed,
                g.telemetry_attempts,
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("default", 5, 0, 0, 5),
            ("edr", 0, 0, 1, 0),
            ("pilot", 0, 2, 0, 2)
        ]
    );
    assert_eq!(report.profiles.len(), 1);
    assert_eq!(
        (
            report.profiles[0].profile.as_str(),
            report.profiles[0].rule.as_str(),
            report.profiles[0].flows
        ),
        ("defender", "ms-defender", 1)
    );
    // Dry-run attempts count; a profile's allowed flow is no attempt.
    let clients: Vec<(&str, u64)> = report
        .top_clients
        .iter()
        .map(|c| (c.client.as_str(), c.telemetry_attempts))
        .collect();
    assert_eq!(clients, [("p:aaaa", 5), ("p:bbbb", 2)]);
    let text = text(&report);
    assert!(text.contains("Per client group:"), "{text}");
    assert!(
        text.contains("profile defender: 1 flows by rule ms-defender"),
        "{text}"
    );
    assert!(text.contains("p:aaaa"), "{text}");
    let html = html(&report);
    assert!(html.contains("id=\"groups\"") && html.contains("id=\"clients\""));
}

/// A blocked flow from `addr`, pseudonymised with `key`.
fn pseudonymised_flow(key: &audit::Pseudonymizer, addr: &str) -> AuditEvent {
    let mut event = audit_flow("microsoft", "ms-diagtrack", "reject", 40_000);
    if let AuditEvent::Flow {
        client, key_epoch, ..
    } = &mut event
    {
        *client = key.pseudonym(addr.parse().unwrap());
        *key_epoch = Some(key.epoch().to_string());
    }
    event
}

#[test]
fn key_epochs_are_reported_and_a_compromised_one_is_flagged() {
    let old = audit::Pseudonymizer::new(b"the first key, 32 bytes long....");
    let new = audit::Pseudonymizer::new(b"the second key, also long enough");
    assert_ne!(old.epoch(), new.epoch());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut w = AuditWriter::open(&path).unwrap();
    w.append(at(0), audit_start("v1", true));
    for client in ["10.0.0.1", "10.0.0.1", "10.0.0.2"] {
        w.append(at(10), pseudonymised_flow(&old, client));
    }
    // Rotated, and the old key reported compromised, while the daemon ran.
    w.append(
        at(100),
        AuditEvent::PseudonymKey {
            key_epoch: Some(new.epoch().to_string()),
            previous_key_epoch: Some(old.epoch().to_string()),
            compromised_key_epochs: vec![old.epoch().to_string()],
        },
    );
    w.append(at(110), pseudonymised_flow(&new, "10.0.0.1"));
    w.commit().unwrap();
    let report = build(std::slice::from_ref(&path), Period::default()).unwrap();
    assert!(
        report.chain.verified,
        "the rotation does not break the chain"
    );
    let rows: Vec<(&str, u64, u64, bool)> = report
        .key_epochs
        .iter()
        .map(|k| {
            (
                k.key_epoch.as_str(),
                k.flows,
                k.clients,
                k.compromised_since.is_some(),
            )
        })
        .collect();
    let mut expected = vec![(old.epoch(), 3, 2, true), (new.epoch(), 1, 1, false)];
    expected.sort();
    assert_eq!(rows, expected);
    // The same client has another pseudonym under the new key: two rows, one flagged.
    let mut flagged: Vec<(u64, bool)> = report
        .top_clients
        .iter()
        .map(|c| (c.telemetry_attempts, c.compromised_key_epoch.is_some()))
        .collect();
    flagged.sort();
    assert_eq!(flagged, [(1, false), (1, true), (2, true)]);
    let text = text(&report);
    assert!(
        text.contains(&format!(
            "key epoch {}: 3 flow records, 2 clients, 2026-11-01T00:00:10.000000Z to 2026-11-01T00:00:10.000000Z; COMPROMISED (recorded 2026-11-01T00:01:40.000000Z)",
            old.epoch()
        )),
        "{text}"
    );
    assert!(text.contains("(key compromised)"), "{text}");
    let html = html(&report);
    assert!(html.contains("id=\"key-epochs\""), "{html}");
    // A report of the period before the compromise was recorded still flags the key: the
    // logs read say so.
    let before = build(
        &[path],
        Period {
            since: None,
            until: Some(at(50)),
        },
    )
    .unwrap();
    assert_eq!(before.key_epochs.len(), 1);
    assert!(before.key_epochs[0].compromised_since.is_some());
}
