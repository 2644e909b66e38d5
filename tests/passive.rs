//! Passive mode for real: `telestrip run` capturing on the gateway's client-side interface
//! (no firewall rules, nothing queued), real curl traffic through the gateway.

mod common;

use common::{BODY, SERVER_V4};

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn passive_mode_logs_telemetry_without_touching_traffic() {
    let mut lab = common::lab();
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
    assert_eq!(events[0]["action"], "reject");
    assert_eq!(events[0]["applied"], "log");
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn passive_resets_end_blocked_tcp_flows_at_both_ends() {
    let mut lab = common::lab();
    lab.start_daemon("mode: passive\ninterfaces: [gc]\npassive_resets: true\n")
        .unwrap();
    // A TLS connection that stays open: openssl waits 3 s for input after the handshake.
    // The resets must end it long before that.
    let connection = lab.client(&format!(
        "sleep 3 | openssl s_client -connect {SERVER_V4}:443 -servername v10.events.data.microsoft.com 2>&1"
    ));
    let text = String::from_utf8_lossy(&connection.stdout);
    assert!(
        text.contains("errno=104")
            || text.contains("Connection reset")
            || text.contains("write:errno=32"),
        "the connection was not reset:\n{text}"
    );
    let ordinary = lab.https("www.example.org", SERVER_V4, "");
    assert_eq!(String::from_utf8_lossy(&ordinary.stdout), BODY);
    let log = lab.stop_daemon("TERM");
    let sent: u64 = log
        .split(" TCP resets sent")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(sent >= 2, "{log}");
    assert_eq!(lab.events()[0]["applied"], "reject");
}
