//! End to end: the `telestrip pcap` binary over the real captures in tests/fixtures must find
//! exactly the flows listed in tests/fixtures/expected.tsv, and count the names it read.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{expectations, fixtures, flow_rows};

fn run_json(args: &[&str]) -> (i32, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (output.status.code().unwrap(), json)
}

#[test]
fn every_fixture_gives_exactly_the_expected_flows() {
    let expectations = expectations();
    let pcaps: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    assert!(pcaps.len() >= 11, "fixtures missing: {pcaps:?}");
    for pcap in pcaps {
        let stem = pcap.file_stem().unwrap().to_str().unwrap().to_string();
        let expected = expectations
            .get(&stem)
            .unwrap_or_else(|| panic!("{stem} has no rows in expected.tsv"));
        let (code, json) = run_json(&[
            "pcap",
            "--quiet",
            "--format",
            "json",
            pcap.to_str().unwrap(),
        ]);
        let flows = flow_rows(&json);
        let mut wanted = expected.flows.clone();
        wanted.sort();
        assert_eq!(flows, wanted, "{stem}: matched flows");
        let inspected = common::nonzero_counts(&json, "inspected");
        assert_eq!(inspected, expected.inspected, "{stem}: names read");
        let ech = common::nonzero_counts(&json, "ech_flows");
        assert_eq!(ech, expected.ech, "{stem}: flows with real and GREASE ECH");
        let blocked = wanted.iter().any(|f| f[4] == "drop" || f[4] == "reject");
        assert_eq!(code, if blocked { 1 } else { 0 }, "{stem}: exit code");
        assert_eq!(
            json["stats"]["parse_errors"]
                .as_object()
                .unwrap()
                .values()
                .filter(|v| v.as_u64() != Some(0))
                .count(),
            0,
            "{stem}: parse errors"
        );
        // The same with packet threads (DNS judged by the reading thread, flows by theirs).
        let (threaded_code, threaded) = run_json(&[
            "pcap",
            "--quiet",
            "--threads",
            "2",
            "--format",
            "json",
            pcap.to_str().unwrap(),
        ]);
        assert_eq!(flow_rows(&threaded), wanted, "{stem}: --threads 2");
        let stats = |json: &serde_json::Value| {
            let mut stats = json["stats"].clone();
            stats.as_object_mut().unwrap().remove("seconds");
            stats
        };
        assert_eq!(stats(&threaded), stats(&json), "{stem}: --threads 2");
        assert_eq!(threaded_code, code, "{stem}: --threads 2");
    }
}

#[test]
fn dry_run_reports_blocking_rules_as_log() {
    let pcap = fixtures().join("tls13-curl.pcap");
    let (code, json) = run_json(&[
        "pcap",
        "-q",
        "--dry-run",
        "--format",
        "json",
        pcap.to_str().unwrap(),
    ]);
    let flow = &json["flows"][0];
    assert_eq!(flow["action"], "reject");
    assert_eq!(flow["applied"], "log");
    assert_eq!(json["stats"]["packets_dropped"], 0);
    // A blocking rule matched, which the exit code reports even in a dry run.
    assert_eq!(code, 1);
}

#[test]
fn several_files_are_read_as_one_run() {
    let a = fixtures().join("dns-udp-sll2.pcap");
    let b = fixtures().join("learned.pcap");
    let (_, json) = run_json(&[
        "pcap",
        "-q",
        "--format",
        "json",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    // Three from the first file, four from the second (expected.tsv).
    assert_eq!(json["flows"].as_array().unwrap().len(), 7);
    let summary = json["summary"].as_array().unwrap();
    let diagtrack = summary
        .iter()
        .find(|s| s["rule"] == "ms-windows-diagtrack")
        .unwrap();
    assert_eq!(diagtrack["flows"], 3);
}

#[test]
fn csv_and_table_carry_the_same_flows() {
    let pcap = fixtures().join("http.pcap");
    let csv = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "-q", "--format", "csv", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    let csv = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "time,protocol,client,server,name,via,rule,vendor,action,applied"
    );
    assert_eq!(lines.len(), 3);
    assert!(lines[1]
        .contains(",nexus.officeapps.live.com,http,ms-office-telemetry,microsoft,reject,reject"));
    let table = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "-q", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("browser.events.data.msn.com"));
    assert!(table.contains("Summary by vendor and rule:"));
    assert!(table.contains("ms-edge-diagnostics"));
}

/// Client datagrams to UDP port `port` that left their flow pending (the ClientHello was not
/// complete yet), through the library's engine with the bundled rules.
fn pending_quic_datagrams(fixture: &str, port: u16) -> usize {
    use telestrip::engine::{Engine, EngineConfig, FlowStatus};
    let (_, rules) = telestrip::cli::load_rules(None).unwrap();
    let engine = Engine::new(rules, EngineConfig::default());
    let mut worker = engine.worker();
    let mut events = Vec::new();
    let path = fixtures().join(format!("{fixture}.pcap"));
    let mut reader = telestrip::source::pcap::CaptureReader::open(&path).unwrap();
    let mut pending = 0;
    while let Some(frame) = reader.next_frame() {
        let frame = frame.unwrap();
        let verdict = worker.process(frame.link, frame.data, frame.time, &mut events);
        let packet = telestrip::wire::parse(frame.link, frame.data).unwrap();
        if packet.protocol == telestrip::wire::Protocol::Udp
            && packet.dst_port == port
            && verdict.flow == FlowStatus::Pending
        {
            pending += 1;
        }
    }
    pending
}

#[test]
fn large_quic_hellos_from_real_clients_span_two_datagrams() {
    // Chromium's post-quantum ClientHello, in both of its connection attempts.
    assert_eq!(pending_quic_datagrams("chromium-quic", 443), 2);
    // aioquic's padded ClientHello over IPv4 and IPv6; its ordinary ones fit one datagram.
    assert_eq!(pending_quic_datagrams("quic-aioquic", 443), 2);
}
