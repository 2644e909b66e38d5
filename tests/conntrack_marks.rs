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

use telestrip::conntrack::{Conntrack, FlowTuple, MarkUpdate, Written};
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
    assert_eq!(conntrack.set_mark(&update).unwrap(), Written::Updated);
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
    assert_eq!(conntrack.set_mark(&reversed).unwrap(), Written::Updated);

    // A TCP flow the kernel does not track: reported, never made up.
    let absent = MarkUpdate {
        tuple: FlowTuple {
            protocol: Protocol::Tcp,
            src_port: 9,
            dst_port: 9,
            ..tuple
        },
        mark: 0x20,
        mask: 0xf0,
    };
    assert_eq!(conntrack.set_mark(&absent).unwrap(), Written::NotFound);
    assert!(!listing(&["-p", "tcp", "--dport", "9"]).contains("dport=9 "));

    // A UDP flow blocked on its first datagram has no connection (the dropped datagram
    // was never confirmed): one is made with the mark, and the kernel itself drops the
    // flow's next datagram on it.
    common::sh("iptables -A OUTPUT -p udp --dport 9999 -m connmark --mark 0x20/0xf0 -j DROP");
    common::sh("iptables -A OUTPUT -p udp --dport 9999 -m conntrack --ctstate NEW -m mark ! --mark 0x1 -j DROP");
    let blocked = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Dropped by the rule above (the sender sees EPERM).
    let _ = blocked.send_to(b"first", "127.0.0.1:9999");
    assert!(!listing(&["-p", "udp", "--dport", "9999"]).contains("dport=9999"));
    let first = MarkUpdate {
        tuple: FlowTuple {
            src_port: blocked.local_addr().unwrap().port(),
            dst_port: 9999,
            ..tuple
        },
        mark: 0x20,
        mask: 0xf0,
    };
    assert_eq!(conntrack.set_mark(&first).unwrap(), Written::Created);
    let made = listing(&["-p", "udp", "--dport", "9999"]);
    assert!(made.contains("mark=32"), "{made}");
    // Made again (a second block verdict on the same flow): the existing one is updated.
    assert_eq!(conntrack.set_mark(&first).unwrap(), Written::Updated);
    let before = connmark_drops();
    let _ = blocked.send_to(b"second", "127.0.0.1:9999");
    assert_eq!(connmark_drops(), before + 1);

    // Both updates were announced as they happened.
    std::thread::sleep(Duration::from_millis(500));
    // `timeout` passes the TERM on to the conntrack it runs.
    common::sh(&format!("kill -TERM {}", events.id()));
    let output = events.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("mark=288"), "announced: {text}");
    assert!(text.contains("mark=304"), "announced: {text}");
}

fn listing(filter: &[&str]) -> String {
    let output = Command::new("conntrack")
        .arg("-L")
        .args(filter)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Packets dropped on the connection mark by the OUTPUT rule for port 9999.
fn connmark_drops() -> u64 {
    let output = Command::new("iptables")
        .args(["-L", "OUTPUT", "-v", "-x", "-n"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .find(|line| line.contains("dpt:9999") && line.contains("connmark"))
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no connmark rule in {text}"))
}
