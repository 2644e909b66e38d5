//! Real clients against real servers, recorded now: runs tests/fixtures/capture.sh (two
//! network namespaces, curl, openssl, Python ssl, dig, Chromium, dnsmasq) into a temporary
//! folder and checks that `telestrip pcap` finds in the fresh captures the same distinct flows
//! (server, name, via, rule, action) as in the committed ones (tests/fixtures/expected.tsv).
//! Distinct, because a browser opens a varying number of connections to one name; the exact
//! counts are checked on the committed captures by pcap_fixtures.rs.
//!
//! Needs root and the tools the script names. In CI (CI=true) a missing requirement is a
//! failure; elsewhere the test says it did not run and why (see tests/common).

mod common;

use std::path::Path;
use std::process::Command;

/// Distinct matched flows of a capture, as expected.tsv rows, and its ECH flow counts.
fn flows(pcap: &Path) -> (Vec<Vec<String>>, std::collections::BTreeMap<String, u64>) {
    let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "-q", "--format", "json", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut rows = common::flow_rows(&json);
    rows.dedup();
    (rows, common::nonzero_counts(&json, "ech_flows"))
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn fresh_captures_from_real_clients_match_the_expectations() {
    common::require(&["tcpdump", "chromium"]);
    let fixtures = common::fixtures();
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(fixtures.join("capture.sh"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "capture.sh failed");

    let expected = common::expectations();
    assert!(expected.len() >= 11);
    for (fixture, expected) in expected {
        let mut rows = expected.flows;
        rows.sort();
        rows.dedup();
        let fresh = out.path().join(format!("{fixture}.pcap"));
        assert!(fresh.exists(), "{fixture}.pcap was not captured");
        let (fresh_rows, ech) = flows(&fresh);
        assert_eq!(fresh_rows, rows, "{fixture}: fresh capture");
        // Today's Chromium still sends real ECH when DNS offers it, and GREASE otherwise.
        for kind in expected.ech.keys() {
            assert!(
                ech.contains_key(kind),
                "{fixture}: no flow with {kind} ECH in the fresh capture ({ech:?})"
            );
        }
    }
}
