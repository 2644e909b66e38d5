//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz), kept in the library so that the
//! inputs that once crashed a target run again as ordinary tests (`tests/fuzz_regressions.rs`).
//! Each takes arbitrary bytes and must neither panic nor allocate without bound.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::engine::{Route, Routed};
use crate::inspect::{dns, http, quic, tls};
use crate::rules::{self, RuleSet, Source};
use crate::wire::{self, LinkType, Protocol};
use crate::{Engine, EngineConfig};

/// A fuzz target: arbitrary bytes in, no panic.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/Cargo.toml` names them.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", frame),
    ("dns", dns_message),
    ("tls", tls_hello),
    ("quic", quic_initial),
    ("http", http_request),
    ("rules_yaml", rules_yaml),
    ("config", config),
    ("engine", engine),
    ("audit_line", audit_line),
];

/// L2-L4 parsing under every link type telestrip reads.
pub fn frame(data: &[u8]) {
    for link in LinkType::ALL {
        if let Ok(packet) = wire::parse(link, data) {
            assert!(packet.payload.len() <= data.len());
        }
        // The fast path for common frames must read every frame as the general one does.
        if let Some(common) = wire::parse_common(link, data) {
            assert_eq!(Ok(common), wire::parse_general(link, data));
        }
        // What the verdict cache's peek reads, the full parse must read the same way.
        if let Some(peeked) = wire::peek(link, data) {
            let packet = wire::parse(link, data);
            assert_eq!(Some(peeked), packet.ok().and_then(|p| p.peeked()));
        }
    }
}

/// DNS messages (questions, answers with CNAME chains and SVCB hints), the NXDOMAIN answer
/// built from a query (which must parse again), DNS-over-TCP framing.
pub fn dns_message(data: &[u8]) {
    if let Ok(message) = dns::Message::parse(data) {
        let _ = message.first_question();
        for question in message.questions() {
            let _ = question;
        }
        if let Ok(records) = message.answers() {
            for record in records {
                let _ = record;
            }
        }
    }
    let mut answer = Vec::new();
    if dns::nxdomain_answer(data, &mut answer).is_ok() {
        assert!(
            dns::Message::parse(&answer).is_ok(),
            "an NXDOMAIN answer telestrip built does not parse"
        );
    }
    let _ = dns::split_tcp(data);
    ech_stripped(data);
}

/// A response without its `ech` parameters must say everything else the original said:
/// the same answer records, read the same way, none of them offering ECH.
fn ech_stripped(data: &[u8]) {
    let mut stripper = dns::strip::EchStripper::default();
    let mut stripped = Vec::new();
    if stripper
        .hide(data, &mut stripped)
        .is_ok_and(|hidden| hidden > 0)
    {
        assert_eq!(stripped.len(), data.len(), "hiding ech changed the length");
        same_records_but_ech(data, &stripped);
    }
    if stripper
        .strip(data, &mut stripped)
        .is_ok_and(|removed| removed > 0)
    {
        same_records_but_ech(data, &stripped);
    }
}

fn same_records_but_ech(data: &[u8], stripped: &[u8]) {
    let records = |bytes: &[u8]| -> Vec<Result<dns::Record, crate::inspect::At<dns::DnsError>>> {
        let message = dns::Message::parse(bytes).expect("a stripped message has a header");
        message
            .answers()
            .expect("the questions of a stripped message can be skipped")
            .collect()
    };
    let before = records(data);
    let after = records(stripped);
    assert_eq!(before.len(), after.len(), "stripping lost answer records");
    for (before, after) in before.into_iter().zip(after) {
        match (before, after) {
            (Ok(mut before), Ok(after)) => {
                if let dns::RecordData::Svcb(hints) = &mut before.data {
                    hints.ech = false;
                    hints.ech_config = None;
                }
                assert_eq!(before, after, "a record changed beyond its ech parameter");
            }
            (before, after) => assert_eq!(before.is_err(), after.is_err()),
        }
    }
}

/// A ClientHello from the first bytes of a TCP stream and from QUIC CRYPTO data.
pub fn tls_hello(data: &[u8]) {
    let mut scratch = Vec::new();
    let _ = tls::scan_client_hello(data, &mut scratch);
    let _ = tls::scan_handshake(data);
}

/// QUIC client Initials: the datagram as received, the input as a Google CHLO and inside
/// a Q046 Initial, and, so that the decrypted side is reached, the input as the plaintext
/// frames of a correctly protected Initial of version 1, 2, draft 29 or Q050 (whose frames
/// are Google's).
pub fn quic_initial(data: &[u8]) {
    let mut scratch = quic::InitialScratch::default();
    let _ = quic::client_initial_version(data);
    let _ = quic::read_client_initials(data, &mut scratch, |_, _| {});
    let _ = crate::inspect::gquic::scan_chlo(data);
    let q046 = crate::gquic_q046_initial(data);
    let _ = quic::read_client_initials(&q046, &mut scratch, |_, _| {});
    let Some((&selector, frames)) = data.split_first() else {
        return;
    };
    let version = [1, 0x6b33_43cf, quic::DRAFT_29, quic::Q050][usize::from(selector & 3)];
    let dcid = [selector; 8];
    if let Ok(datagram) =
        quic::protect_client_initial(version, &dcid, &[1, 2, 3, 4], 0, frames, 1200)
    {
        let mut total = 0usize;
        let _ =
            quic::read_client_initials(&datagram, &mut scratch, |_, bytes| total += bytes.len());
        // A frame cut short runs into the PADDING that fills the packet: still inside it.
        assert!(
            total <= datagram.len(),
            "more CRYPTO bytes than the packet holds"
        );
    }
}

/// HTTP request heads: Host header, absolute-form and CONNECT targets.
pub fn http_request(data: &[u8]) {
    let _ = http::scan_request(data);
}

/// Rule files: parse, validate, lint, compile, match.
pub fn rules_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source {
        name: "fuzz.yaml".into(),
        text: text.into(),
    };
    let Ok(files) = rules::load_sources(vec![source]) else {
        return;
    };
    let _ = rules::lint::lint(&files);
    if let Ok(set) = RuleSet::compile(&files) {
        let _ = set.match_name(b"v10.events.data.microsoft.com", 443, Protocol::Tcp);
        let _ = set.near_misses(b"events.data.microsoft.com");
    }
}

/// The daemon's configuration file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::from_text("fuzz.yaml", text);
    }
}

/// One audit log line, as `audit verify` and `report` read it.
pub fn audit_line(data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = crate::audit::parse_line(line);
    }
}

/// The whole engine over a sequence of packets with the bundled rules. The first byte picks
/// the link type, then frames follow, each after a 2-byte big-endian length. A small flow
/// table so that eviction and the table-full paths run too. The same packets also go the
/// way `telestrip pcap --threads` takes them (one worker routes, reassembles and judges DNS,
/// another judges the flows from the parsed layout, the caller sweeps): every verdict and
/// every match must be the same.
pub fn engine(data: &[u8]) {
    static RULES: OnceLock<Option<Arc<RuleSet>>> = OnceLock::new();
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let link = match first % 3 {
        0 => LinkType::Ethernet,
        1 => LinkType::RawIp,
        _ => LinkType::LinuxSll2,
    };
    let rules = RULES.get_or_init(|| {
        let files = rules::load_sources(rules::bundled_sources()).ok()?;
        RuleSet::compile(&files).ok().map(Arc::new)
    });
    let Some(rules) = rules else {
        return;
    };
    let config = EngineConfig {
        max_flows: 64,
        ..EngineConfig::default()
    };
    let one = Engine::with_shared_rules(Arc::clone(rules), config);
    let mut worker = one.worker();
    let split = Engine::with_shared_rules(Arc::clone(rules), config);
    let mut router = split.worker();
    router.set_sweeping(false);
    let mut lane = split.worker();
    lane.set_sweeping(false);
    let (mut events, mut split_events) = (Vec::new(), Vec::new());
    let mut time = Duration::from_secs(1_700_000_000);
    while let Some((len, after)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let (frame, next) = after.split_at(len.min(after.len()));
        rest = next;
        time += Duration::from_millis((len % 256) as u64 * 100);
        let verdict = worker.process(link, frame, time, &mut events);
        let prepared = router.prepare(link, frame, time);
        if prepared.reaches_table() {
            split.flows().maybe_sweep(time.as_secs());
        }
        let routed = match router.finish_route(prepared, frame, time, &mut split_events) {
            Route::Done(verdict) => verdict,
            Route::Peeked(_, probe) => {
                lane.process_routed(Routed::Peeked(link, frame, &probe), time, &mut split_events)
            }
            Route::Frame(_, layout) => {
                lane.process_routed(Routed::Frame(frame, &layout), time, &mut split_events)
            }
            Route::Datagram(_, datagram) => {
                lane.process_routed(Routed::Datagram(&datagram), time, &mut split_events)
            }
        };
        assert_eq!(
            verdict, routed,
            "the routed way judged a packet differently"
        );
    }
    assert_eq!(events, split_events, "the routed way matched differently");
}

/// Frames an engine input: the link selector, then each frame after its length.
pub fn engine_input(link_selector: u8, frames: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![link_selector];
    for frame in frames {
        let len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(frame.get(..usize::from(len)).unwrap_or(frame));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{generate, telemetry_names, MixOptions};
    use crate::{client_hello, ip_fragments, tls_flow, Hosts};

    #[test]
    fn the_routed_way_agrees_with_one_worker_on_the_traffic_mix_and_fragments() {
        let files = rules::load_sources(rules::bundled_sources()).unwrap();
        let set = RuleSet::compile(&files).unwrap();
        let names = telemetry_names(&files, &set);
        let options = MixOptions {
            packets: 3_000,
            telemetry_percent: 30,
            ..MixOptions::default()
        };
        let mut frames = Vec::new();
        generate(&options, &names, |_, frame| {
            frames.push(frame.to_vec());
            Ok(())
        })
        .unwrap();
        let hosts = Hosts::new("10.9.0.1", 41000, "198.51.100.77", 443);
        for frame in tls_flow(&hosts, &client_hello("v10.events.data.microsoft.com"), 0) {
            frames.extend(ip_fragments(&frame, 64, 7).into_iter().rev());
        }
        let borrowed: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        // Ethernet frames; the engine's asserts compare both ways packet by packet.
        engine(&engine_input(0, &borrowed));
    }
}
