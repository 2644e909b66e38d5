//! Real clients against real servers, recorded now: runs tests/fixtures/capture.sh (two
//! network namespaces, curl, openssl, Python ssl, dig, Chromium, dnsmasq) into a temporary
//! folder and checks that `telestrip pcap` finds in the fresh captures the same distinct flows
//! (server, name, via, rule, action) as in the committed ones (tests/fixtures/expected.tsv).
//! Distinct, because a browser opens a varying number of connections to one name; the exact
//! counts are checked on the committed captures by pcap_fixtures.rs.
//!
//! Needs root and the tools the script names. In CI (CI=true) a missing requirement is a
//! failure; elsewhere the test says it did not run and why.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn requirement_missing() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    for tool in [
        "ip", "tcpdump", "dnsmasq", "curl", "openssl", "dig", "ethtool", "python3", "chromium",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn flows(pcap: &Path) -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "-q", "--format", "json", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut rows: Vec<String> = json["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["name"].as_str().unwrap();
            format!(
                "{}\t{}\t{}\t{}\t{}",
                f["server"].as_str().unwrap(),
                if name.is_empty() { "-" } else { name },
                f["via"].as_str().unwrap(),
                f["rule"].as_str().unwrap(),
                f["applied"].as_str().unwrap()
            )
        })
        .collect();
    rows.sort();
    rows.dedup();
    rows
}

#[test]
fn fresh_captures_from_real_clients_match_the_expectations() {
    if let Some(reason) = requirement_missing() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the live capture test must run in CI, but {reason}");
        }
        eprintln!("live capture test NOT RUN: {reason} (it runs in CI as root)");
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(fixtures.join("capture.sh"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "capture.sh failed");

    let text = std::fs::read_to_string(fixtures.join("expected.tsv")).unwrap();
    let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() > 2 && fields[1] == "flow" {
            expected
                .entry(fields[0])
                .or_default()
                .push(fields[2..].join("\t"));
        }
    }
    assert!(expected.len() >= 11);
    for (fixture, mut rows) in expected {
        rows.sort();
        rows.dedup();
        let fresh = out.path().join(format!("{fixture}.pcap"));
        assert!(fresh.exists(), "{fixture}.pcap was not captured");
        assert_eq!(flows(&fresh), rows, "{fixture}: fresh capture");
    }
}
