//! Evasion suite: captures built with etherparse builders that try to slip a telemetry name
//! past the filter (or to make an allowed flow look blocked), each run through the engine
//! with the bundled rules. Every case states whether the flow must be blocked and which
//! evasion counter must show the attempt. The cases are also written to
//! `target/test-artifacts/evasion/` and read back by `telestrip pcap`, as a user would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use telestrip::engine::{ChecksumSurvey, Engine, EngineConfig};
use telestrip::stats::Evasion;
use telestrip::wire::LinkType;
use telestrip_testkit::{
    client_hello, client_hello_with, dns_query, handshake_client_hello, http_get, ip_fragments,
    quic_first_flight, quic_initial_to, tls_flow, write_pcap, HelloOptions, Hosts, Shape, Vlan,
    ACK, SYN, SYN_ACK,
};

/// Dropped by the bundled Microsoft pack.
const TELEMETRY: &str = "v10.events.data.microsoft.com";
/// Allowed by the bundled Microsoft pack (sign-in).
const ALLOWED: &str = "login.microsoftonline.com";
/// Allowed too (Windows Update), and as long as [`TELEMETRY`], so that the two hellos
/// line up byte for byte in the overlap cases.
const ALLOWED_SAME_LENGTH: &str = "ab.download.windowsupdate.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A blocking rule matched this name.
    Blocked(&'static str),
    /// No blocking rule matched.
    Passed,
}

struct Case {
    name: &'static str,
    frames: Vec<Vec<u8>>,
    expect: Expect,
    /// The evasion counter that must count the attempt (the others stay at zero).
    evasion: Option<(Evasion, u64)>,
}

fn case(name: &'static str, frames: Vec<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        frames,
        expect,
        evasion: None,
    }
}

fn counted(mut case: Case, kind: Evasion, times: u64) -> Case {
    case.evasion = Some((kind, times));
    case
}

fn v4() -> Hosts {
    Hosts::new("192.0.2.10", 40000, "198.51.100.20", 443)
}

fn v6() -> Hosts {
    Hosts::new("2001:db8::10", 40000, "2001:db8:1::20", 443)
}

fn handshake(h: &Hosts) -> Vec<Vec<u8>> {
    vec![
        h.tcp(true, 1000, SYN, &[]),
        h.tcp(false, 5000, SYN_ACK, &[]),
        h.tcp(true, 1001, ACK, &[]),
    ]
}

/// The handshake, then `pieces` of the client's stream as (offset, bytes) segments.
fn segments(h: &Hosts, pieces: &[(usize, &[u8])]) -> Vec<Vec<u8>> {
    let mut frames = handshake(h);
    for (offset, bytes) in pieces {
        frames.push(h.tcp(true, 1001 + *offset as u32, ACK, bytes));
    }
    frames
}

fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<(usize, &'a [u8])> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([bytes.len()].iter()) {
        pieces.push((start, &bytes[start..cut]));
        start = cut;
    }
    pieces
}

fn decoy_then_real(shape: Shape, decoy_seq: u32) -> Vec<Vec<u8>> {
    let h = v4();
    let mut frames = handshake(&h);
    frames.push(h.tcp_shaped(true, decoy_seq, ACK, &client_hello(ALLOWED), shape));
    frames.push(h.tcp(true, 1001, ACK, &client_hello(TELEMETRY)));
    frames
}

fn hello_names(names: &[&str]) -> Vec<u8> {
    client_hello_with(&HelloOptions {
        names: names.iter().map(|n| n.to_string()).collect(),
        ..HelloOptions::default()
    })
}

fn http_flow(request: &[u8], cut: Option<usize>) -> Vec<Vec<u8>> {
    let h = Hosts::new("192.0.2.10", 40000, "198.51.100.20", 80);
    match cut {
        Some(cut) => segments(&h, &split_at(request, &[cut])),
        None => segments(&h, &[(0, request)]),
    }
}

fn dns_hosts() -> Hosts {
    Hosts::new("192.0.2.10", 40053, "192.0.2.53", 53)
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

fn dns_tcp(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    let h = dns_hosts();
    let mut frames = handshake(&h);
    let mut seq = 1001u32;
    for piece in pieces {
        frames.push(h.tcp(true, seq, ACK, piece));
        seq += piece.len() as u32;
    }
    frames
}

/// A query with two questions: `first`, then `prefix` + a compression pointer to `first`.
fn two_question_query(first: &str, prefix: &str) -> Vec<u8> {
    let mut message = vec![0x12, 0x34, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, 0];
    for label in first.split('.') {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    for label in prefix.split('.') {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    message
}

/// An IPv6 frame with a hop-by-hop options header (PadN) put before its transport header.
fn with_hop_by_hop(frame: &[u8]) -> Vec<u8> {
    let ip = 14;
    let mut out = frame[..ip + 40].to_vec();
    let next = out[ip + 6];
    out[ip + 6] = 0; // hop-by-hop
    let len = u16::from_be_bytes([out[ip + 4], out[ip + 5]]) + 8;
    out[ip + 4..ip + 6].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&frame[ip + 40..]);
    out
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let hello = client_hello(TELEMETRY);
    let sni_at = hello
        .windows(TELEMETRY.len())
        .position(|w| w == TELEMETRY.as_bytes())
        .unwrap();
    let allowed_hello = client_hello(ALLOWED_SAME_LENGTH);
    assert_eq!(allowed_hello.len(), hello.len());
    let h = v4();
    let mut cases = vec![
        case(
            "hello in one segment",
            tls_flow(&h, &hello, 0),
            Blocked(TELEMETRY),
        ),
        case(
            "allowed hello in one segment",
            tls_flow(&h, &client_hello(ALLOWED), 0),
            Passed,
        ),
        case(
            "split after 2 bytes",
            segments(&h, &split_at(&hello, &[2])),
            Blocked(TELEMETRY),
        ),
        case(
            "split inside the SNI",
            segments(&h, &split_at(&hello, &[sni_at + 7])),
            Blocked(TELEMETRY),
        ),
        case(
            "1-byte segments",
            tls_flow(&h, &hello, 1),
            Blocked(TELEMETRY),
        ),
        case(
            "5-byte segments",
            tls_flow(&h, &hello, 5),
            Blocked(TELEMETRY),
        ),
        case(
            "several TLS records in one segment",
            tls_flow(
                &h,
                &client_hello_with(&HelloOptions {
                    names: vec![TELEMETRY.into()],
                    record_size: 40,
                    ..HelloOptions::default()
                }),
                0,
            ),
            Blocked(TELEMETRY),
        ),
        case(
            "several TLS records across segments",
            tls_flow(
                &h,
                &client_hello_with(&HelloOptions {
                    names: vec![TELEMETRY.into()],
                    record_size: 40,
                    padding: 600,
                    ..HelloOptions::default()
                }),
                70,
            ),
            Blocked(TELEMETRY),
        ),
        case(
            "segments in reverse order",
            {
                let mut pieces = split_at(&hello, &[40, 80, 120]);
                pieces.reverse();
                segments(&h, &pieces)
            },
            Blocked(TELEMETRY),
        ),
        case(
            "every segment sent twice",
            {
                let pieces = split_at(&hello, &[40, 80, 120]);
                let twice: Vec<_> = pieces.iter().flat_map(|p| [*p, *p]).collect();
                segments(&h, &twice)
            },
            Blocked(TELEMETRY),
        ),
        case(
            "SNI in mixed case",
            tls_flow(&h, &client_hello("V10.Events.DATA.microsoft.COM"), 0),
            Blocked("v10.events.data.microsoft.com"),
        ),
        case(
            "SNI with a trailing dot",
            tls_flow(&h, &client_hello("v10.events.data.microsoft.com."), 0),
            Blocked(TELEMETRY),
        ),
        case(
            "TCP Fast Open: the hello in the SYN",
            vec![
                h.tcp(true, 1000, SYN, &hello),
                h.tcp(false, 5000, SYN_ACK, &[]),
            ],
            Blocked(TELEMETRY),
        ),
        case("IPv6", tls_flow(&v6(), &hello, 0), Blocked(TELEMETRY)),
        case(
            "802.1Q VLAN",
            tls_flow(&h.with_vlan(Vlan::Single(42)), &hello, 0),
            Blocked(TELEMETRY),
        ),
        case(
            "QinQ",
            tls_flow(&h.with_vlan(Vlan::Double(100, 42)), &hello, 0),
            Blocked(TELEMETRY),
        ),
        case(
            "IPv6 hop-by-hop extension header",
            tls_flow(&v6(), &hello, 0)
                .iter()
                .map(|f| with_hop_by_hop(f))
                .collect(),
            Blocked(TELEMETRY),
        ),
    ];

    // Overlapping segments with different bytes: the host keeps the first copy of in-order
    // data (Linux, BSD, Windows) but a later copy that covers an out-of-order segment
    // (Linux), so telestrip judges both versions and goes by the stricter.
    let later = 60;
    cases.push(counted(
        case(
            "conflicting retransmission, allowed copy first",
            segments(
                &h,
                &[
                    (later, &allowed_hello[later..]),
                    (later, &hello[later..]),
                    (0, &hello[..later]),
                ],
            ),
            Blocked(TELEMETRY),
        ),
        Evasion::OverlapConflict,
        1,
    ));
    cases.push(counted(
        case(
            "conflicting retransmission, telemetry copy first",
            segments(
                &h,
                &[
                    (later, &hello[later..]),
                    (later, &allowed_hello[later..]),
                    (0, &hello[..later]),
                ],
            ),
            Blocked(TELEMETRY),
        ),
        Evasion::OverlapConflict,
        1,
    ));
    cases.push(counted(
        case(
            "conflicting overlap of the SNI by a shifted segment",
            segments(
                &h,
                &[
                    (sni_at + 3, &allowed_hello[sni_at + 3..sni_at + 20]),
                    (0, &hello[..sni_at + 10]),
                    (sni_at + 10, &hello[sni_at + 10..]),
                ],
            ),
            Blocked(TELEMETRY),
        ),
        Evasion::OverlapConflict,
        1,
    ));

    // Decoys carrying an allowed name that the server never accepts, sent before the real
    // hello at the same sequence number.
    let decoys = [
        (
            "decoy with a TTL too low to reach the server",
            Shape {
                ttl: 3,
                ..Shape::default()
            },
            1001,
            Evasion::LowTtl,
        ),
        (
            "decoy with a TCP MD5 signature option",
            Shape {
                md5: true,
                ..Shape::default()
            },
            1001,
            Evasion::Md5Option,
        ),
        (
            "decoy outside the window",
            Shape::default(),
            1001 + 1_000_000,
            Evasion::OutOfWindow,
        ),
    ];
    for (name, shape, seq, kind) in decoys {
        cases.push(counted(
            case(name, decoy_then_real(shape, seq), Blocked(TELEMETRY)),
            kind,
            1,
        ));
    }
    // Offline, checksums count per sending address (Suricata's "auto" mode): a wrong one
    // among right ones from the same client is a decoy the server dropped...
    cases.push(counted(
        case(
            "decoy with a bad TCP checksum among right ones",
            decoy_then_real(
                Shape {
                    bad_checksum: true,
                    ..Shape::default()
                },
                1001,
            ),
            Blocked(TELEMETRY),
        ),
        Evasion::BadChecksum,
        1,
    ));
    // ...while a client whose checksums are all wrong was captured with checksum offload
    // (or the capture was edited): its checksums mean nothing, its hello is read.
    let offloaded = v4();
    let wrong = Shape {
        bad_checksum: true,
        ..Shape::default()
    };
    cases.push(case(
        "checksum offload: every client segment has a wrong checksum",
        vec![
            offloaded.tcp_shaped(true, 1000, SYN, &[], wrong),
            offloaded.tcp(false, 5000, SYN_ACK, &[]),
            offloaded.tcp_shaped(true, 1001, ACK, &[], wrong),
            offloaded.tcp_shaped(true, 1001, ACK, &client_hello(TELEMETRY), wrong),
        ],
        Blocked(TELEMETRY),
    ));
    // The same for QUIC: a fake Initial with a harmless name and a wrong UDP checksum,
    // then the real one.
    let quic = v4();
    let initial =
        |name: &str| quic_first_flight(1, &handshake_client_hello(name, 0), 4096, 1, &[]).remove(0);
    let mut decoy = quic.udp(true, &initial(ALLOWED));
    // Ethernet 14 + IPv4 20 bytes, then the UDP checksum at offset 6.
    decoy[14 + 20 + 6] ^= 0x5a;
    // A fake Initial whose protection does not decrypt (its last byte, in the AEAD tag,
    // changed; the UDP checksum right), then the real one: the server drops the fake, the
    // filter waits for an Initial it can read.
    let mut broken = initial(ALLOWED);
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    cases.push(case(
        "QUIC decoy Initial with broken protection, then the real one",
        vec![quic.udp(true, &broken), quic.udp(true, &initial(TELEMETRY))],
        Blocked(TELEMETRY),
    ));
    cases.push(counted(
        case(
            "QUIC decoy Initial with a bad UDP checksum, then the real one",
            vec![decoy, quic.udp(true, &initial(TELEMETRY))],
            Blocked(TELEMETRY),
        ),
        Evasion::BadChecksum,
        1,
    ));
    // Valid decoy Initials with a harmless name, ahead of the real one: another
    // destination connection ID (other keys; the server never answers it), a TTL that
    // expires before the server, the same connection ID with other bytes. The flow is
    // allowed by the decoy, then blocked by the real hello.
    let dcid_decoy = v4();
    cases.push(counted(
        case(
            "QUIC decoy Initial to another connection ID, then the real one",
            vec![
                dcid_decoy.udp(
                    true,
                    &quic_initial_to(&[0xde, 0xc0, 0x1d], &handshake_client_hello(ALLOWED, 0)),
                ),
                dcid_decoy.udp(true, &initial(TELEMETRY)),
                dcid_decoy.udp(false, &[0xc3; 1200]),
            ],
            Blocked(TELEMETRY),
        ),
        Evasion::QuicDecoy,
        1,
    ));
    let ttl_decoy = v4();
    cases.push(counted(
        case(
            "QUIC decoy Initial with a low TTL, then the real one",
            vec![
                ttl_decoy.udp_with_ttl(true, &initial(ALLOWED), 2),
                ttl_decoy.udp(true, &initial(TELEMETRY)),
            ],
            Blocked(TELEMETRY),
        ),
        Evasion::QuicDecoy,
        1,
    ));
    // Retransmissions and the client's ACK-only Initials of an allowed flow change nothing.
    let resent = v4();
    let ack_only = telestrip::inspect::quic::protect_client_initial(
        telestrip::inspect::quic::VERSION_1,
        &[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08],
        &[1, 2, 3, 4],
        1,
        &[0x02, 0x00, 0x00, 0x00, 0x00],
        1200,
    )
    .unwrap();
    cases.push(case(
        "QUIC allowed hello sent again, then an ACK-only Initial",
        vec![
            resent.udp(true, &initial(ALLOWED)),
            resent.udp(false, &[0xc3; 1200]),
            resent.udp(true, &initial(ALLOWED)),
            resent.udp(true, &ack_only),
        ],
        Passed,
    ));
    // The same decoys in front of an allowed hello do not block it.
    let h_ok = v4();
    let mut frames = handshake(&h_ok);
    frames.push(h_ok.tcp_shaped(
        true,
        1001,
        ACK,
        &hello,
        Shape {
            ttl: 3,
            ..Shape::default()
        },
    ));
    frames.push(h_ok.tcp(true, 1001, ACK, &client_hello(ALLOWED)));
    cases.push(counted(
        case(
            "telemetry decoy with a low TTL before an allowed hello",
            frames,
            Passed,
        ),
        Evasion::LowTtl,
        1,
    ));

    cases.push(counted(
        case(
            "two names in one server_name list, allowed first",
            tls_flow(&h, &hello_names(&[ALLOWED, TELEMETRY]), 0),
            Blocked(TELEMETRY),
        ),
        Evasion::SeveralNames,
        1,
    ));
    cases.push(counted(
        case(
            "two names in one server_name list, telemetry first",
            tls_flow(&h, &hello_names(&[TELEMETRY, ALLOWED]), 0),
            Blocked(TELEMETRY),
        ),
        Evasion::SeveralNames,
        1,
    ));

    // IP fragments: reassembled (bounded, with a timeout) and inspected.
    let hello_frame = h.tcp(true, 1001, ACK, &hello);
    let v6_frame = v6().tcp(true, 1001, ACK, &hello);
    let with_handshake = |h: &Hosts, fragments: Vec<Vec<u8>>| {
        let mut frames = handshake(h);
        frames.extend(fragments);
        frames
    };
    cases.push(case(
        "IPv4 fragments in order",
        with_handshake(&h, ip_fragments(&hello_frame, 64, 77)),
        Blocked(TELEMETRY),
    ));
    cases.push(case(
        "IPv4 fragments reversed",
        with_handshake(
            &h,
            ip_fragments(&hello_frame, 64, 78)
                .into_iter()
                .rev()
                .collect(),
        ),
        Blocked(TELEMETRY),
    ));
    cases.push(case(
        "IPv6 fragments in order",
        with_handshake(&v6(), ip_fragments(&v6_frame, 64, 79)),
        Blocked(TELEMETRY),
    ));
    cases.push(case(
        "IPv6 fragments reversed",
        with_handshake(
            &v6(),
            ip_fragments(&v6_frame, 64, 80).into_iter().rev().collect(),
        ),
        Blocked(TELEMETRY),
    ));
    let dns = dns_hosts();
    let query = dns.udp(true, &dns_query(7, TELEMETRY, 1));
    cases.push(case(
        "DNS query in IPv4 fragments",
        ip_fragments(&query, 16, 81),
        Blocked(TELEMETRY),
    ));
    cases.push(case(
        "DNS query in IPv4 fragments reversed",
        ip_fragments(&query, 16, 82).into_iter().rev().collect(),
        Blocked(TELEMETRY),
    ));
    let dns6 = Hosts::new("2001:db8::10", 40053, "2001:db8:1::53", 53);
    cases.push(case(
        "DNS query in IPv6 fragments",
        ip_fragments(&dns6.udp(true, &dns_query(8, TELEMETRY, 28)), 16, 83),
        Blocked(TELEMETRY),
    ));
    // Overlapping fragments: the whole datagram is discarded (RFC 5722), by the host too;
    // the client's retransmission of the segment, unfragmented, is then blocked.
    let mut overlapping = ip_fragments(&hello_frame, 64, 84);
    let mut covering = ip_fragments(&h.tcp(true, 1001, ACK, &allowed_hello), 64, 84);
    overlapping.insert(1, covering.remove(1));
    let mut frames = with_handshake(&h, overlapping);
    cases.push(counted(
        case("overlapping IPv4 fragments", frames.clone(), Passed),
        Evasion::FragmentOverlap,
        1,
    ));
    frames.push(hello_frame.clone());
    cases.push(counted(
        case(
            "overlapping IPv4 fragments, then the segment again",
            frames,
            Blocked(TELEMETRY),
        ),
        Evasion::FragmentOverlap,
        1,
    ));

    // HTTP Host.
    let request = http_get(TELEMETRY);
    let host_at = request
        .windows(TELEMETRY.len())
        .position(|w| w == TELEMETRY.as_bytes())
        .unwrap();
    cases.push(case(
        "HTTP Host split across segments",
        http_flow(&request, Some(host_at + 5)),
        Blocked(TELEMETRY),
    ));
    cases.push(case(
        "HTTP Host with odd case and whitespace",
        http_flow(
            format!(
                "GET / HTTP/1.1\r\nhOsT: \t {} \t\r\nAccept: */*\r\n\r\n",
                "V10.events.DATA.microsoft.com"
            )
            .as_bytes(),
            None,
        ),
        Blocked(TELEMETRY),
    ));
    cases.push(case(
        "HTTP Host with port and trailing dot",
        http_flow(
            format!("GET / HTTP/1.1\r\nHost: {TELEMETRY}.:80\r\n\r\n").as_bytes(),
            None,
        ),
        Blocked(TELEMETRY),
    ));
    cases.push(counted(
        case(
            "HTTP absolute-form target naming telemetry, Host allowed",
            http_flow(
                format!("GET http://{TELEMETRY}/v1 HTTP/1.1\r\nHost: {ALLOWED}\r\n\r\n").as_bytes(),
                None,
            ),
            Blocked(TELEMETRY),
        ),
        Evasion::SeveralNames,
        1,
    ));
    cases.push(counted(
        case(
            "HTTP absolute-form target allowed, Host naming telemetry",
            http_flow(
                format!("GET http://{ALLOWED}/ HTTP/1.1\r\nHost: {TELEMETRY}\r\n\r\n").as_bytes(),
                None,
            ),
            Blocked(TELEMETRY),
        ),
        Evasion::SeveralNames,
        1,
    ));
    cases.push(counted(
        case(
            "two HTTP Host headers",
            http_flow(
                format!("GET / HTTP/1.1\r\nHost: {ALLOWED}\r\nHost: {TELEMETRY}\r\n\r\n")
                    .as_bytes(),
                None,
            ),
            Blocked(TELEMETRY),
        ),
        Evasion::SeveralNames,
        1,
    ));

    // DNS.
    let message = framed(&dns_query(9, TELEMETRY, 1));
    cases.push(case(
        "DNS over TCP, one message over several segments",
        dns_tcp(&[&message[..1], &message[1..9], &message[9..]]),
        Blocked(TELEMETRY),
    ));
    let mut packed = framed(&dns_query(10, ALLOWED, 1));
    packed.extend_from_slice(&message);
    cases.push(case(
        "DNS over TCP, several messages in one segment",
        dns_tcp(&[&packed]),
        Blocked(TELEMETRY),
    ));
    cases.push(case(
        "DNS 0x20 mixed case",
        vec![dns.udp(true, &dns_query(11, "v10.EvEnTs.dAtA.MiCrOsOfT.cOm", 1))],
        Blocked(TELEMETRY),
    ));
    cases.push(counted(
        case(
            "DNS query with two questions and a compression pointer",
            vec![dns.udp(
                true,
                &two_question_query("data.microsoft.com", "v10.events"),
            )],
            Blocked(TELEMETRY),
        ),
        Evasion::SeveralNames,
        1,
    ));
    cases
}

struct Outcome {
    blocked: Vec<String>,
    evasion: BTreeMap<&'static str, u64>,
}

fn run(case: &Case) -> Outcome {
    let (_, rules) = telestrip::cli::load_rules(None).unwrap();
    let engine = Engine::new(rules, EngineConfig::default());
    let mut worker = engine.worker();
    // What `telestrip pcap` does with each capture's first packets.
    let mut survey = ChecksumSurvey::default();
    for frame in &case.frames {
        survey.observe(LinkType::Ethernet, frame);
    }
    worker.trust_capture_checksums(std::sync::Arc::new(survey.untrusted()));
    let mut events = Vec::new();
    for (i, frame) in case.frames.iter().enumerate() {
        let time = Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64);
        worker.process(LinkType::Ethernet, frame, time, &mut events);
    }
    Outcome {
        blocked: events
            .iter()
            .filter(|e| e.action.blocks())
            .filter_map(|e| e.name.clone())
            .collect(),
        evasion: Evasion::ALL
            .iter()
            .map(|k| (k.as_str(), engine.counters.evasion_of(*k)))
            .filter(|(_, n)| *n > 0)
            .collect(),
    }
}

#[test]
fn every_evasion_case_is_blocked_exactly_when_it_should_be_and_counted() {
    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        let outcome = run(case);
        let blocked_ok = match case.expect {
            Expect::Blocked(name) => outcome.blocked == [name],
            Expect::Passed => outcome.blocked.is_empty(),
        };
        let expected: BTreeMap<&str, u64> = case
            .evasion
            .iter()
            .map(|(kind, n)| (kind.as_str(), *n))
            .collect();
        let evasion_ok = outcome.evasion == expected;
        println!(
            "{:<60} {:<8} evasion {:?}",
            case.name,
            if outcome.blocked.is_empty() {
                "passed"
            } else {
                "blocked"
            },
            outcome.evasion
        );
        if !blocked_ok || !evasion_ok {
            failures.push(format!(
                "{}: expected {:?} with evasion {:?}, got blocked {:?} with evasion {:?}",
                case.name, case.expect, expected, outcome.blocked, outcome.evasion
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 52, "{} cases", cases.len());
}

/// The same cases written as captures and read by `telestrip pcap`: what a user replaying
/// them sees.
#[test]
fn the_cli_reports_the_same_for_each_capture() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join("test-artifacts")
        .join("evasion");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, case) in cases().iter().enumerate() {
        let file = dir.join(format!(
            "{i:02}-{}.pcap",
            case.name.replace([' ', ',', ':', '/'], "-")
        ));
        write_pcap(&file, &case.frames, Duration::from_secs(1_700_000_000)).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
            .args(["pcap", "--format", "json", file.to_str().unwrap()])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: {}",
                case.name,
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let blocked: Vec<&str> = json["flows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| matches!(f["action"].as_str(), Some("drop" | "reject")))
            .filter_map(|f| f["name"].as_str())
            .collect();
        match case.expect {
            Expect::Blocked(name) => {
                assert_eq!(blocked, [name], "{}", case.name);
                assert_eq!(
                    output.status.code(),
                    Some(1),
                    "{}: exit code when telemetry is found",
                    case.name
                );
            }
            Expect::Passed => assert!(blocked.is_empty(), "{}: {blocked:?}", case.name),
        }
        if let Some((kind, times)) = case.evasion {
            assert_eq!(
                json["stats"]["evasion_attempts"][kind.as_str()].as_u64(),
                Some(times),
                "{}",
                case.name
            );
        }
    }
}
