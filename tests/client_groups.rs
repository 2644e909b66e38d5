//! Client groups and service profiles on the inline gateway: one client whose group turns on
//! the Defender for Endpoint profile, one in a dry-run pilot group, one in no group, all
//! behind the same gateway with the bundled rules; what each meets, and how the flow
//! events, the metrics, the audit log and the report tell them apart. Needs root.

mod common;

use common::{BODY, SERVER_V4, SERVER_V6};

/// The client's second address, in the pilot group.
const PILOT: &str = "10.78.1.3";

fn text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn groups_get_their_own_profiles_and_enforcement_and_are_reported_apart() {
    let mut lab = common::lab();
    lab.start_telestrip("queues: [0]\nfail: open\n", "open")
        .unwrap();
    lab.stop_daemon("TERM");
    common::sh(&format!("ip -n {} addr add {PILOT}/24 dev c0", lab.client));
    let audit = lab.audit_dir().unwrap().join("audit.jsonl");
    let config = format!(
        "queues: [0]\nfail: open\nlisten: 127.0.0.1:9477\naudit:\n  path: {}\nclients:\n  - name: edr-servers\n    prefixes: [10.78.1.2/32]\n    profiles: [microsoft-defender-for-endpoint]\n  - name: pilot\n    prefixes: [{PILOT}/32]\n    enforce: false\n",
        audit.display()
    );
    let config_path = lab.dir.path().join("groups.yaml");
    std::fs::write(&config_path, &config).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["config", "check"])
        .arg(&config_path)
        .output()
        .unwrap();
    let shown = text(&check);
    assert_eq!(check.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("client group edr-servers: 10.78.1.2/32; profiles: microsoft-defender-for-endpoint; enforcement as the gateway"),
        "{shown}"
    );
    assert!(
        shown.contains("client group pilot: 10.78.1.3/32; profiles: none; dry run"),
        "{shown}"
    );
    lab.start_daemon(&config).unwrap();

    let edr = "eu-v20.events.data.microsoft.com";
    let diagtrack = "v10.events.data.microsoft.com";
    // The EDR servers reach Defender's collector and nothing else under the suffix.
    let passed = lab.https(edr, SERVER_V4, "");
    assert_eq!(
        String::from_utf8_lossy(&passed.stdout),
        BODY,
        "{}",
        text(&passed)
    );
    assert!(common::refused(&lab.https(diagtrack, SERVER_V4, "")));
    // The same client over IPv6 is in no group: the profile is off for it.
    assert!(common::refused(&lab.https(edr, SERVER_V6, "")));
    // The pilot only logs what the others block.
    let pilot = lab.https(diagtrack, SERVER_V4, &format!("--interface {PILOT}"));
    assert_eq!(
        String::from_utf8_lossy(&pilot.stdout),
        BODY,
        "{}",
        text(&pilot)
    );

    let events = common::events_when(&lab, |events| events.len() >= 4);
    let seen: Vec<(String, String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["applied"].as_str().unwrap_or_default().to_string(),
                e["group"].as_str().unwrap_or("default").to_string(),
                e["profile"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let row = |name: &str, applied: &str, group: &str, profile: &str| {
        (
            name.to_string(),
            applied.to_string(),
            group.to_string(),
            profile.to_string(),
        )
    };
    for expected in [
        row(
            edr,
            "allow",
            "edr-servers",
            "microsoft-defender-for-endpoint",
        ),
        row(diagtrack, "reject", "edr-servers", "-"),
        row(edr, "reject", "default", "-"),
        row(diagtrack, "log", "pilot", "-"),
    ] {
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    }

    let metrics = text(&lab.gateway("curl -sf http://127.0.0.1:9477/metrics"));
    for series in [
        "telestrip_flows_total{action=\"allow\",group=\"edr-servers\",rule=\"ms-profile-defender-edr-data\",vendor=\"microsoft\"} 1",
        "telestrip_flows_total{action=\"log\",group=\"pilot\",rule=\"ms-windows-diagtrack\",vendor=\"microsoft\"} 1",
        "telestrip_flows_total{action=\"reject\",group=\"default\",rule=\"ms-1ds-collector\",vendor=\"microsoft\"} 1",
        "telestrip_flows_total{action=\"reject\",group=\"edr-servers\",rule=\"ms-windows-diagtrack\",vendor=\"microsoft\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} not in:\n{metrics}");
    }
    lab.stop_daemon("TERM");

    let report = std::process::Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .arg("report")
        .arg(&audit)
        .output()
        .unwrap();
    let shown = text(&report);
    assert!(shown.contains("Audit chain: VERIFIED"), "{shown}");
    let group_line = |group: &str| {
        shown
            .lines()
            .skip_while(|l| !l.starts_with("Per client group:"))
            .find(|l| l.split_whitespace().next() == Some(group))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
    };
    // blocked, logged, allowed, telemetry attempts
    assert_eq!(
        group_line("edr-servers").as_deref(),
        Some("1 0 1 1"),
        "{shown}"
    );
    assert_eq!(group_line("pilot").as_deref(), Some("0 1 0 1"), "{shown}");
    assert_eq!(group_line("default").as_deref(), Some("1 0 0 1"), "{shown}");
    assert!(
        shown.contains("profile microsoft-defender-for-endpoint: 1 flows by rule ms-profile-defender-edr-data (microsoft)"),
        "{shown}"
    );
    let clients: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("Clients with the most telemetry attempts"))
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(clients.len(), 3, "{shown}");
    for client in ["10.78.1.2", PILOT, "fd78:1::2"] {
        assert!(
            clients.contains(&client),
            "{client} not in {clients:?}: {shown}"
        );
    }
}
