//! Captures of the kinds admins bring that are not plain Ethernet, recorded now by
//! tests/fixtures/capture_kinds.sh from real clients in two namespaces: Linux cooked v1 on
//! loopback, WebDAV methods, a real VXLAN tunnel, and one HTTP session re-sent inside GRE,
//! gretap, IP in IP, IPv4 in IPv6, IPv6 in IPv4 and GTP-U. In each, `telestrip pcap` must find the
//! telemetry request and judge every packet. Also: a capture telestrip cannot read is
//! reported incomplete (exit 2), never clean.
//!
//! The namespace test needs root, tcpdump, curl and python3 with scapy; in CI (CI=true) a
//! missing requirement is a failure (see tests/common).

mod common;

use std::path::Path;
use std::process::Command;

const NAME: &str = "v10.events.data.microsoft.com";

fn audit(pcap: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "-q", "--format", "json"])
        .args(extra)
        .arg(pcap)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{}: {e}: {output:?}", pcap.display()));
    (common::code(&output), json)
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn captures_of_every_kind_show_the_telemetry_request_and_judge_every_packet() {
    common::require(&["tcpdump", "curl"]);
    let scapy = Command::new("python3")
        .args(["-c", "import scapy.contrib.gtp"])
        .status()
        .is_ok_and(|s| s.success());
    if !scapy {
        common::not_run("scapy is not installed; pip install scapy".into());
    }
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(common::fixtures().join("capture_kinds.sh"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "capture_kinds.sh failed");
    // (file, requests with the name, tunnel kind opened)
    let cases = [
        ("sll-loopback", 1, None),
        ("webdav", 2, None),
        ("vxlan", 1, Some("vxlan")),
        ("tunnel-gre", 1, Some("gre")),
        ("tunnel-gretap", 1, Some("gre")),
        ("tunnel-ipip", 1, Some("ipip")),
        ("tunnel-4in6", 1, Some("ipip")),
        ("tunnel-6in4", 1, Some("ipip")),
        ("tunnel-gtpu", 1, Some("gtpu")),
    ];
    for (file, requests, tunnel) in cases {
        let pcap = out.path().join(format!("{file}.pcap"));
        let (code, json) = audit(&pcap, &["--max-unjudged", "0"]);
        let flows: Vec<_> = json["flows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] == NAME && f["via"] == "http")
            .collect();
        assert_eq!(flows.len(), requests, "{file}: {}", json["flows"]);
        assert_eq!(code, 1, "{file}: telemetry found");
        let coverage = &json["coverage"];
        assert_eq!(coverage["complete"], true, "{file}: {coverage}");
        assert_eq!(coverage["unjudged_packets"], 0, "{file}: {coverage}");
        if let Some(kind) = tunnel {
            let opened = json["stats"]["tunnels_opened"][kind].as_u64().unwrap();
            assert!(opened >= 6, "{file}: {opened} {kind} packets opened");
        }
    }
}

/// A capture of frames that say they are Ethernet but hold no readable IP header.
fn unreadable_capture(dir: &Path) -> std::path::PathBuf {
    let good = telestrip_testkit::Hosts::new("192.0.2.1", 40000, "192.0.2.2", 80).tcp(
        true,
        1,
        telestrip_testkit::ACK,
        b"x",
    );
    let mut frames = vec![good];
    for i in 0..9u8 {
        // EtherType IPv4, then an IPv4 header whose length field is impossible.
        let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(&[0x41, 0, 0, 20 + i]);
        frame.resize(60, 0);
        frames.push(frame);
    }
    let path = dir.join("unreadable.pcap");
    telestrip_testkit::write_pcap(&path, &frames, std::time::Duration::from_secs(1)).unwrap();
    path
}

#[test]
fn a_capture_that_could_not_be_judged_is_reported_incomplete_not_clean() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = unreadable_capture(dir.path());
    let (code, json) = audit(&pcap, &[]);
    assert_eq!(code, 2, "exit code for an incomplete audit");
    assert_eq!(json["incomplete"], true);
    assert_eq!(json["coverage"]["unjudged_packets"], 9);
    assert_eq!(json["coverage"]["unjudged"]["network"], 9);

    let table = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "-q"])
        .arg(&pcap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with(
            "INCOMPLETE AUDIT: 9 of 10 packets (90.00%) could not be judged (9 network)"
        ),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&table.stderr).contains("INCOMPLETE AUDIT"));

    let csv = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "-q", "--format", "csv"])
        .arg(&pcap)
        .output()
        .unwrap();
    let last = String::from_utf8_lossy(&csv.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert!(last.starts_with("# INCOMPLETE AUDIT"), "{last}");
    assert_eq!(common::code(&csv), 2);

    // A threshold above the share lets the same capture pass as read.
    let (code, json) = audit(&pcap, &["--max-unjudged", "95"]);
    assert_eq!(
        (code, &json["incomplete"]),
        (0, &serde_json::Value::Bool(false))
    );
}

#[test]
fn max_unjudged_must_be_a_percentage() {
    let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "--max-unjudged", "150", "x.pcap"])
        .output()
        .unwrap();
    assert_eq!(common::code(&output), 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("150 is not between 0 and 100"));
}
