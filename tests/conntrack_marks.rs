//! The ctnetlink writer of a gateway pair (`announce_verdicts`) against the kernel's real
//! connection table, in a network namespace of its own: an update sets telestrip's bits of
//! the mark and keeps the others, conntrack announces it at once (what conntrackd relies
//! on), and a flow the kernel does not track is reported as such, never created.
//!
//! The test runs itself again inside the namespace (ctnetlink works on the namespace of
//! the socket's creator).
mod common;

use std::net::{IpAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use telestrip::conntrack::{Conntrack, FlowTuple, MarkUpdate};
use telestrip::wire::Protocol;

const INSIDE: &str = "TELESTRIP_CT_TEST_INSIDE";

#[test]
#[ignore = "needs root and network namespaces; scripts/test.sh runs it"]
fn ctnetlink_update_sets_our_bits_keeps_the_others_and_is_announced() {
    if std::env::var_os(INSIDE).is_some() {
        inside_namespace();
        return;
    }
    common::require(&["conntrack"]);
    let namespace = format!("tsct-{}", std::process::id());
    common::sh(&format!(
        "ip netns add {namespace} && ip -n {namespace} link set lo up"
    ));
    let status = Command::new("ip")
        .args(["netns", "exec", &namespace])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ctnetlink_update_sets_our_bits_keeps_the_others_and_is_announced",
            "--include-ignored",
            "--nocapture",
        ])
        .env(INSIDE, "1")
        .status()
        .unwrap();
    common::sh(&format!("ip netns del {namespace}"));
    assert!(status.success(), "the part inside the namespace failed");
}

fn inside_namespace() {
    // Conntrack tracks a namespace's flows only once a rule uses it; this rule also gives
    // every new UDP connection an administrator's bit that telestrip must keep.
    common::sh(
        "iptables -A OUTPUT -p udp -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0x100",
    );
    let events = Command::new("timeout")
        .args([
            "20",
            "conntrack",
            "-E",
            "-e",
            "UPDATE",
            "-p",
            "udp",
            "-o",
            "extended",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"telemetry", server.local_addr().unwrap())
        .unwrap();
    let (client_port, server_port) = (
        client.local_addr().unwrap().port(),
        server.local_addr().unwrap().port(),
    );
    let tuple = FlowTuple {
        src: IpAddr::from([127, 0, 0, 1]),
        dst: IpAddr::from([127, 0, 0, 1]),
        protocol: Protocol::Udp,
        src_port: client_port,
        dst_port: server_port,
    };
    let mut conntrack = Conntrack::open().unwrap();
    // The drop code (2) in the 4-bit field at bit 4, as the firewall rules use it.
    let update = MarkUpdate {
        tuple,
        mark: 0x20,
        mask: 0xf0,
    };
    assert!(conntrack.set_mark(&update).unwrap(), "the flow is tracked");
    let listed = String::from_utf8(
        Command::new("conntrack")
            .args(["-L", "-p", "udp", "--dport", &server_port.to_string()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        listed.contains("mark=288"),
        "0x100 kept, 0x20 added: {listed}"
    );
    // The reply direction's tuple finds the same connection.
    let reversed = MarkUpdate {
        tuple: tuple.reversed(),
        mark: 0x30,
        mask: 0xf0,
    };
    assert!(conntrack.set_mark(&reversed).unwrap());

    // A flow nobody opened: reported, and not created.
    let absent = MarkUpdate {
        tuple: FlowTuple {
            src_port: 9,
            dst_port: 9,
            ..tuple
        },
        mark: 0x20,
        mask: 0xf0,
    };
    assert!(!conntrack.set_mark(&absent).unwrap());
    let listed = Command::new("conntrack")
        .args(["-L", "-p", "udp", "--dport", "9"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("dport=9 "));

    // Both updates were announced as they happened.
    std::thread::sleep(Duration::from_millis(500));
    // `timeout` passes the TERM on to the conntrack it runs.
    common::sh(&format!("kill -TERM {}", events.id()));
    let output = events.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("mark=288"), "announced: {text}");
    assert!(text.contains("mark=304"), "announced: {text}");
}
