//! Passive mode for real: `telestrip run` capturing on the gateway's client-side interface
//! (no firewall rules, nothing queued), real curl traffic through the gateway.

mod common;

use common::SERVER_V4;

const BODY: &str = "telestrip test server\n";

#[test]
fn passive_mode_logs_telemetry_without_touching_traffic() {
    let Some(mut lab) = common::lab() else { return };
    lab.start_daemon("mode: passive\ninterfaces: [gc]\n")
        .unwrap();
    let telemetry = lab.https("v10.events.data.microsoft.com", SERVER_V4, "");
    assert_eq!(
        String::from_utf8_lossy(&telemetry.stdout),
        BODY,
        "passive mode must not block"
    );
    let ordinary = lab.https("www.example.org", SERVER_V4, "");
    assert_eq!(String::from_utf8_lossy(&ordinary.stdout), BODY);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let events = lab.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["name"], "v10.events.data.microsoft.com");
    assert_eq!(events[0]["action"], "drop");
    assert_eq!(events[0]["applied"], "log");
}

#[test]
fn passive_resets_end_blocked_tcp_flows_at_both_ends() {
    let Some(mut lab) = common::lab() else { return };
    lab.start_daemon("mode: passive\ninterfaces: [gc]\npassive_resets: true\n")
        .unwrap();
    let telemetry = lab.https("v10.events.data.microsoft.com", SERVER_V4, "");
    let code = telemetry.status.code().unwrap_or(-1);
    // 35: TLS handshake failed, 56: connection reset while receiving.
    assert!(
        [35, 56].contains(&code),
        "curl exit {code}: {}",
        String::from_utf8_lossy(&telemetry.stdout)
    );
    let ordinary = lab.https("www.example.org", SERVER_V4, "");
    assert_eq!(String::from_utf8_lossy(&ordinary.stdout), BODY);
    let log = lab.stop_daemon("TERM");
    assert!(log.contains("2 TCP resets sent"), "{log}");
    assert_eq!(lab.events()[0]["applied"], "drop");
}
