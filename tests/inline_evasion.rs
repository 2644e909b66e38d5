//! Evasion through the real gateway: a raw-socket client (scapy, `tests/fixtures/raw_tcp.py`)
//! in the client namespace sends decoys and fragments the way an attacker would, through
//! `telestrip run` on NFQUEUE with the firewall rules of deploy/, to a TCP listener in the
//! server namespace that records every byte it receives. What counts is what the server got.
//! Needs root and scapy; runs in CI.

mod common;

use std::time::{Duration, Instant};

use common::{SERVER_V4, SERVER_V6};
use serde_json::json;
use telestrip::lab::Lab;
use telestrip_testkit::client_hello;

const TELEMETRY: &str = "v10.events.data.microsoft.com";
const ALLOWED: &str = "login.microsoftonline.com";
const PORT: u16 = 8443;

/// Records `PORT HEX` for every chunk of data each connection receives.
const RECORDER: &str = r#"
import socket, sys, threading
out = open(sys.argv[1], 'a', buffering=1)
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', int(sys.argv[2])))
s.listen(64)
def serve(c, port):
    c.settimeout(10)
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            out.write(f'{port} {d.hex()}\n')
    except OSError:
        pass
    c.close()
while True:
    c, a = s.accept()
    threading.Thread(target=serve, args=(c, a[1]), daemon=True).start()
"#;

struct Segment {
    data: Vec<u8>,
    offset: usize,
    bad_checksum: bool,
    md5: bool,
    fragment: usize,
}

fn segment(data: &[u8]) -> Segment {
    Segment {
        data: data.to_vec(),
        offset: 0,
        bad_checksum: false,
        md5: false,
        fragment: 0,
    }
}

struct Gateway {
    lab: Lab,
    records: std::path::PathBuf,
    script: std::path::PathBuf,
    next_port: u16,
}

impl Gateway {
    fn start() -> Gateway {
        common::require(&[]);
        let scapy = std::process::Command::new("python3")
            .args(["-c", "import scapy"])
            .status()
            .is_ok_and(|s| s.success());
        if !scapy {
            common::not_run("scapy is not installed (pip install scapy)".into());
        }
        let mut lab = common::lab();
        lab.start_telestrip("queues: [0]\nfail: open\n", "open")
            .unwrap();
        let dir = lab.dir.path().to_path_buf();
        let records = dir.join("received.txt");
        let recorder = dir.join("recorder.py");
        let script = dir.join("raw_tcp.py");
        std::fs::write(&recorder, RECORDER).unwrap();
        std::fs::write(&script, include_str!("fixtures/raw_tcp.py")).unwrap();
        lab.spawn_in_server(&format!(
            "python3 {} {} {PORT}",
            recorder.display(),
            records.display()
        ))
        .unwrap();
        // The client kernel knows nothing of the hand-made connections: its resets would
        // close them.
        for tables in ["iptables", "ip6tables"] {
            assert!(lab.client_ok(&format!(
                "{tables} -A OUTPUT -p tcp --tcp-flags RST RST -j DROP"
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lab.client_ok(&format!("python3 -c \"import socket; socket.create_connection(('{SERVER_V4}', {PORT}), 1).close()\"")) {
            assert!(Instant::now() < deadline, "the recorder did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Gateway {
            lab,
            records,
            script,
            next_port: 41000,
        }
    }

    /// Sends the segments on a new hand-made connection; returns what the server received.
    fn send(&mut self, v6: bool, segments: &[Segment]) -> Vec<u8> {
        self.next_port += 1;
        let port = self.next_port;
        let (src, dst) = if v6 {
            ("fd78:1::2", SERVER_V6)
        } else {
            ("10.78.1.2", SERVER_V4)
        };
        let steps: Vec<_> = segments
            .iter()
            .map(|s| {
                json!({
                    "data": s.data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    "offset": s.offset,
                    "bad_checksum": s.bad_checksum,
                    "md5": s.md5,
                    "fragment": s.fragment,
                })
            })
            .collect();
        let output = self.lab.client(&format!(
            "timeout 30 python3 {} {src} {dst} {PORT} {port} '{}'",
            self.script.display(),
            serde_json::Value::Array(steps)
        ));
        assert!(
            output.status.success(),
            "raw client: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
        let records = std::fs::read_to_string(&self.records).unwrap_or_default();
        let mut received = Vec::new();
        for line in records.lines() {
            let Some((from, hex)) = line.split_once(' ') else {
                continue;
            };
            if from == port.to_string() {
                received.extend(
                    (0..hex.len() / 2)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()),
                );
            }
        }
        received
    }

    fn evasion_count(&self, kind: &str) -> u64 {
        self.metric(&format!(
            "telestrip_evasion_attempts_total{{kind=\"{kind}\"}}"
        ))
    }

    /// The value of one series (name and labels as the exporter writes them) on the
    /// gateway's /metrics.
    fn metric(&self, series: &str) -> u64 {
        common::gateway_metric(&self.lab, series)
    }
}

fn contains(haystack: &[u8], name: &str) -> bool {
    haystack.windows(name.len()).any(|w| w == name.as_bytes())
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn decoys_and_fragments_from_a_raw_socket_client_do_not_get_telemetry_through() {
    let mut gateway = Gateway::start();
    let telemetry = client_hello(TELEMETRY);
    let allowed = client_hello(ALLOWED);

    // Controls: the hand-made connection works, and a plain telemetry hello is stopped.
    let got = gateway.send(false, &[segment(&allowed)]);
    assert!(
        contains(&got, ALLOWED),
        "an allowed hello did not reach the server"
    );
    let got = gateway.send(false, &[segment(&telemetry)]);
    assert!(got.is_empty(), "a telemetry hello reached the server");

    // Decoys carrying an allowed name, which the server's kernel discards, then the real hello
    // at the same sequence number.
    let decoys = [
        (
            "bad_checksum",
            Segment {
                bad_checksum: true,
                ..segment(&allowed)
            },
        ),
        (
            "md5_option",
            Segment {
                md5: true,
                ..segment(&allowed)
            },
        ),
        (
            "out_of_window",
            Segment {
                offset: 1_000_000,
                ..segment(&allowed)
            },
        ),
    ];
    for (kind, decoy) in decoys {
        let before = gateway.evasion_count(kind);
        let got = gateway.send(false, &[decoy, segment(&telemetry)]);
        assert!(
            !contains(&got, TELEMETRY),
            "{kind} decoy: the telemetry hello reached the server"
        );
        assert!(
            !contains(&got, ALLOWED),
            "{kind} decoy: the server accepted the decoy, so it is no decoy"
        );
        assert_eq!(
            gateway.evasion_count(kind),
            before + 1,
            "{kind} not counted"
        );
    }

    // The hello in IP fragments (the gateway's kernel reassembles them before NFQUEUE).
    for v6 in [false, true] {
        let fragmented = |hello: &[u8]| Segment {
            fragment: 48,
            ..segment(hello)
        };
        let got = gateway.send(v6, &[fragmented(&allowed)]);
        assert!(
            contains(&got, ALLOWED),
            "fragmented allowed hello (v6: {v6}) did not arrive"
        );
        let got = gateway.send(v6, &[fragmented(&telemetry)]);
        assert!(
            got.is_empty(),
            "fragmented telemetry hello (v6: {v6}) reached the server"
        );
    }

    // Split inside the name: the first part passes while the flow is pending, the rest not.
    let sni_at = telemetry
        .windows(TELEMETRY.len())
        .position(|w| w == TELEMETRY.as_bytes())
        .unwrap();
    let cut = sni_at + 9;
    let got = gateway.send(
        false,
        &[
            segment(&telemetry[..cut]),
            Segment {
                offset: cut,
                ..segment(&telemetry[cut..])
            },
        ],
    );
    assert_eq!(got, telemetry[..cut], "more than the first part arrived");
    let rejected = |e: &&serde_json::Value| e["action"] == "reject";
    let names: Vec<String> = common::events_when(&gateway.lab, |events| {
        events.iter().filter(rejected).count() >= 7
    })
    .iter()
    .filter(rejected)
    .map(|e| e["name"].as_str().unwrap_or("").to_string())
    .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(names.iter().all(|n| n == TELEMETRY), "{names:?}");
}

/// Sends, from the client namespace, GRE packets (scapy) to the server namespace whose inner
/// packet is an HTTP request for `host` (or, with `mpls`, GRE carrying MPLS that telestrip
/// does not open); returns how many GRE packets reached the server (tcpdump there).
/// Each call uses its own inner source port `sport`: a new flow inside the tunnel.
fn send_gre(lab: &Lab, host: &str, mpls: bool, count: usize, sport: u16) -> usize {
    let capture = lab.dir.path().join(format!("gre-{host}-{mpls}.pcap"));
    let mut dump = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.server,
            "tcpdump",
            "-Z",
            "root",
            "--immediate-mode",
        ])
        .args(["-U", "-q", "-w", capture.to_str().unwrap(), "ip proto 47"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let inner = if mpls {
        format!("GRE(proto=0x8847)/Raw(b'\\x00\\x01\\x01\\x40' + bytes(IP(src='10.99.0.1', dst='10.99.0.2')/TCP(sport={sport}, dport=80, flags='PA')/request))")
    } else {
        format!("GRE(key_present=1, key=7)/IP(src='10.99.0.1', dst='10.99.0.2')/TCP(sport={sport}, dport=80, flags='PA', seq=1000)/request")
    };
    let script = format!(
        "from scapy.all import *\nrequest = b'GET / HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n'\nsend([IP(src='10.78.1.2', dst='{SERVER_V4}')/{inner}] * {count}, verbose=False)\n"
    );
    let path = lab.dir.path().join("gre.py");
    std::fs::write(&path, script).unwrap();
    let output = lab.client(&format!("timeout 30 python3 {}", path.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::thread::sleep(Duration::from_millis(1000));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &dump.id().to_string()])
        .status();
    let _ = dump.wait();
    let listed = std::process::Command::new("tcpdump")
        .args(["-nr", capture.to_str().unwrap()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&listed.stdout).lines().count()
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn telemetry_inside_a_gre_tunnel_is_stopped_and_what_is_not_opened_is_counted() {
    let gateway = Gateway::start();
    let lab = &gateway.lab;
    assert_eq!(
        send_gre(lab, ALLOWED, false, 3, 40001),
        3,
        "allowed request in GRE"
    );
    assert_eq!(
        send_gre(lab, TELEMETRY, false, 3, 40002),
        0,
        "telemetry in GRE reached the server"
    );
    // MPLS in GRE is not opened: it passes (fail open, as before) and is counted.
    assert_eq!(send_gre(lab, TELEMETRY, true, 2, 40003), 2);
    let value = |series: &str| gateway.metric(series);
    assert_eq!(
        value("telestrip_tunnel_packets_total{result=\"opened\",tunnel=\"gre\"}"),
        6
    );
    assert_eq!(
        value("telestrip_tunnel_packets_total{result=\"unopened\",tunnel=\"gre\"}"),
        2
    );
    assert_eq!(
        value("telestrip_unjudged_packets_total{reason=\"tunnel\"}"),
        2
    );
    let events = common::events_when(lab, |events| events.iter().any(|e| e["via"] == "http"));
    assert!(
        events
            .iter()
            .any(|e| e["name"] == TELEMETRY && e["via"] == "http" && e["action"] == "reject"),
        "{events:?}"
    );
}
