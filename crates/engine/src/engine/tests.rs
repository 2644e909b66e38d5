use std::sync::atomic::Ordering;

use super::*;
use crate::flow::table::Timeouts;
use crate::rules::{load_sources, Source};
use telestrip_testkit::{
    client_hello, client_hello_with, dns_query, dns_response, http_get, tls_flow, Answer,
    HelloOptions, Hosts, ACK, SYN, SYN_ACK,
};

const RULES: &str = r#"
vendor: acme
rules:
  - id: acme-telemetry
    action: drop
    domains: ["*.telemetry.acme.example", "t.acme.example"]
  - id: acme-crash
    action: reject
    domains: [crash.acme.example]
  - id: acme-exception
    action: allow
    domains: [ok.telemetry.acme.example]
  - id: acme-logged
    action: log
    domains: [experiments.acme.example]
  - id: acme-hardcoded
    action: drop
    cidrs: [203.0.113.0/24]
  - id: acme-https-only
    action: drop
    domains: [web-only.acme.example]
    ports: [443]
    protocols: [tcp]
"#;

fn engine_with(config: EngineConfig) -> Engine {
    let files = load_sources(vec![Source {
        name: "acme.yaml".into(),
        text: RULES.into(),
    }])
    .unwrap();
    Engine::new(RuleSet::compile(&files).unwrap(), config)
}

fn engine() -> Engine {
    engine_with(EngineConfig::default())
}

fn hosts() -> Hosts {
    Hosts::new("192.0.2.10", 40000, "198.51.100.20", 443)
}

/// Runs frames through one worker; returns the verdicts and events.
fn run(engine: &Engine, frames: &[Vec<u8>]) -> (Vec<Verdict>, Vec<FlowEvent>) {
    let mut worker = engine.worker();
    let mut events = Vec::new();
    let verdicts = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            worker.process(
                LinkType::Ethernet,
                f,
                Duration::from_secs(1_000) + Duration::from_millis(i as u64),
                &mut events,
            )
        })
        .collect();
    (verdicts, events)
}

fn actions(verdicts: &[Verdict]) -> Vec<PacketAction> {
    verdicts.iter().map(|v| v.action).collect()
}

#[test]
fn drops_a_tls_flow_from_its_client_hello_on() {
    let frames = tls_flow(&hosts(), &client_hello("x.telemetry.acme.example"), 0);
    let (verdicts, events) = run(&engine(), &frames);
    use PacketAction::*;
    assert_eq!(
        actions(&verdicts),
        [Accept, Accept, Accept, Drop, Drop, Drop]
    );
    assert_eq!(verdicts[3].flow, FlowStatus::Decided);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.name.as_deref(), Some("x.telemetry.acme.example"));
    assert_eq!(event.via, Via::Sni);
    assert_eq!(&*event.rule, "acme-telemetry");
    assert_eq!(event.client.to_string(), "192.0.2.10");
    assert_eq!(event.server_port, 443);
}

#[test]
fn finds_sni_in_one_byte_and_five_byte_segments() {
    for segment in [1, 2, 5, 100] {
        let hello = client_hello_with(&HelloOptions {
            names: vec!["t.acme.example".into()],
            padding: 1500,
            ..HelloOptions::default()
        });
        let frames = tls_flow(&hosts(), &hello, segment);
        let engine = engine_with(EngineConfig {
            max_pending_packets: u16::MAX,
            ..EngineConfig::default()
        });
        let (verdicts, events) = run(&engine, &frames);
        assert_eq!(events.len(), 1, "segment {segment}");
        let last_hello_segment = 3 + hello.len().div_ceil(segment) - 1;
        assert_eq!(verdicts[last_hello_segment].action, PacketAction::Drop);
        assert!(verdicts[3..last_hello_segment]
            .iter()
            .all(|v| v.action == PacketAction::Accept));
        assert!(engine.counters.sum(|c| &c.stream_cap_hits) == 0);
    }
}

#[test]
fn finds_sni_when_segments_arrive_out_of_order_or_twice() {
    let hello = client_hello_with(&HelloOptions {
        names: vec!["t.acme.example".into()],
        padding: 600,
        ..HelloOptions::default()
    });
    let h = hosts();
    let (a, rest) = hello.split_at(300);
    let (b, c) = rest.split_at(300);
    let frames = vec![
        h.tcp(true, 1000, SYN, &[]),
        h.tcp(false, 5000, SYN_ACK, &[]),
        h.tcp(true, 1001 + 600, ACK, c),
        h.tcp(true, 1001, ACK, a),
        h.tcp(true, 1001, ACK, a),
        h.tcp(true, 1001 + 300, ACK, b),
    ];
    let (verdicts, events) = run(&engine(), &frames);
    assert_eq!(events.len(), 1);
    assert_eq!(verdicts[5].action, PacketAction::Drop);
}

#[test]
fn finds_sni_split_across_records_and_segments() {
    let hello = client_hello_with(&HelloOptions {
        names: vec!["crash.acme.example".into()],
        padding: 900,
        record_size: 128,
        ..HelloOptions::default()
    });
    let (verdicts, events) = run(&engine(), &tls_flow(&hosts(), &hello, 333));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, Action::Reject);
    assert!(verdicts.iter().any(|v| v.action == PacketAction::Reject));
}

#[test]
fn allow_rule_beats_a_more_general_block() {
    let (verdicts, events) = run(
        &engine(),
        &tls_flow(&hosts(), &client_hello("ok.telemetry.acme.example"), 0),
    );
    assert!(verdicts.iter().all(|v| v.action == PacketAction::Accept));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, Action::Allow);
}

#[test]
fn unmatched_flow_is_decided_and_passes() {
    let (verdicts, events) = run(
        &engine(),
        &tls_flow(&hosts(), &client_hello("www.example.org"), 0),
    );
    assert!(verdicts.iter().all(|v| v.action == PacketAction::Accept));
    assert_eq!(verdicts[3].flow, FlowStatus::Decided);
    assert!(events.is_empty());
}

#[test]
fn log_rule_records_but_passes() {
    let (verdicts, events) = run(
        &engine(),
        &tls_flow(&hosts(), &client_hello("experiments.acme.example"), 0),
    );
    assert!(verdicts.iter().all(|v| v.action == PacketAction::Accept));
    assert_eq!(events[0].applied, Action::Log);
}

#[test]
fn dry_run_turns_blocking_into_log() {
    let engine = engine_with(EngineConfig {
        enforce: false,
        ..EngineConfig::default()
    });
    let (verdicts, events) = run(
        &engine,
        &tls_flow(&hosts(), &client_hello("t.acme.example"), 0),
    );
    assert!(verdicts.iter().all(|v| v.action == PacketAction::Accept));
    assert_eq!(events[0].action, Action::Drop);
    assert_eq!(events[0].applied, Action::Log);
}

#[test]
fn http_host_decides_a_plain_http_flow() {
    let h = Hosts::new("192.0.2.10", 40001, "198.51.100.20", 80);
    let (verdicts, events) = run(&engine(), &tls_flow(&h, &http_get("T.Acme.Example.:80"), 7));
    assert_eq!(events[0].via, Via::Http);
    assert_eq!(events[0].name.as_deref(), Some("t.acme.example"));
    assert_eq!(verdicts.last().unwrap().action, PacketAction::Drop);
}

#[test]
fn port_and_protocol_restrictions_apply() {
    let tls = run(
        &engine(),
        &tls_flow(&hosts(), &client_hello("web-only.acme.example"), 0),
    )
    .1;
    assert_eq!(tls.len(), 1);
    let h8443 = Hosts::new("192.0.2.10", 40001, "198.51.100.20", 8443);
    let other_port = run(
        &engine(),
        &tls_flow(&h8443, &client_hello("web-only.acme.example"), 0),
    )
    .1;
    assert!(other_port.is_empty());
}

#[test]
fn cidr_rule_catches_a_flow_without_a_name() {
    let h = Hosts::new("192.0.2.10", 40000, "203.0.113.5", 9000);
    let frames = tls_flow(&h, b"\x00binary protocol", 0);
    let (verdicts, events) = run(&engine(), &frames);
    assert_eq!(events[0].via, Via::Cidr);
    assert_eq!(events[0].name, None);
    assert_eq!(verdicts[3].action, PacketAction::Drop);
}

#[test]
fn an_answer_is_judged_by_the_strictest_name_of_its_cname_chain_unless_the_question_is_allowed() {
    let engine = engine();
    let dns = Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53);
    fn answer(dns: &Hosts, id: u16, question: &'static str, chain: &[&'static str]) -> Vec<u8> {
        let mut answers: Vec<Answer> = Vec::new();
        let mut owner = question;
        for target in chain {
            answers.push(Answer::Cname(owner, target));
            owner = target;
        }
        answers.push(Answer::A(owner, [198, 51, 100, 80]));
        dns.udp(false, &dns_response(id, question, 1, &answers))
    }
    let cases: [(&str, &[&str], PacketAction, Option<&str>); 7] = [
        // Innocent question, innocent chain.
        (
            "www.example.org",
            &["edge.example.net"],
            PacketAction::Accept,
            None,
        ),
        // The strictest target decides: the logged one, then the blocked one, in a chain.
        (
            "cdn.example.org",
            &["experiments.acme.example", "x.telemetry.acme.example"],
            PacketAction::Drop,
            Some("x.telemetry.acme.example"),
        ),
        // A target only logged: passes, recorded.
        (
            "ab.example.org",
            &["experiments.acme.example"],
            PacketAction::Accept,
            Some("experiments.acme.example"),
        ),
        // A logged question aliased to a rejected name.
        (
            "experiments.acme.example",
            &["crash.acme.example"],
            PacketAction::Reject,
            Some("crash.acme.example"),
        ),
        // An allowed question stays allowed: allow beats block for the same flow.
        (
            "ok.telemetry.acme.example",
            &["x.telemetry.acme.example"],
            PacketAction::Accept,
            None,
        ),
        // So does an answer whose chain passes through an allowed name.
        (
            "alias.example.org",
            &["ok.telemetry.acme.example", "x.telemetry.acme.example"],
            PacketAction::Accept,
            None,
        ),
        // The question itself blocked: judged by it, as before (its query was recorded).
        (
            "t.acme.example",
            &["edge.example.net"],
            PacketAction::Drop,
            None,
        ),
    ];
    let mut worker = engine.worker();
    let mut judge = |frame: &[u8], events: &mut Vec<FlowEvent>| {
        let time = Duration::from_secs(1_000);
        worker
            .process(LinkType::Ethernet, frame, time, events)
            .action
    };
    for (i, (question, chain, action, recorded)) in cases.iter().enumerate() {
        let mut events = Vec::new();
        let frame = answer(&dns, i as u16, question, chain);
        assert_eq!(judge(&frame, &mut events), *action, "{question}");
        let names: Vec<Option<String>> = events.iter().map(|e| e.name.clone()).collect();
        let expected: Vec<Option<String>> =
            recorded.map(|n| Some(n.to_string())).into_iter().collect();
        assert_eq!(names, expected, "{question}");
        // The same answer again (a duplicate): the same verdict, recorded once.
        assert_eq!(judge(&frame, &mut events), *action, "{question}");
        assert_eq!(events.len(), names.len(), "{question}");
    }
    // Counted as bypass attempts: the two cloaked answers a blocking rule matched.
    assert_eq!(engine.counters.bypass_of(Bypass::Cname), 2);
}

#[test]
fn learns_addresses_from_dns_answers_with_their_ttl() {
    let engine = engine();
    let dns = Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53);
    let telemetry_addr = [198, 51, 100, 77];
    let frames = vec![
        dns.udp(true, &dns_query(9, "alias.example", 1)),
        dns.udp(
            false,
            &dns_response(
                9,
                "alias.example",
                1,
                &[
                    Answer::Cname("alias.example", "x.telemetry.acme.example"),
                    Answer::A("x.telemetry.acme.example", telemetry_addr),
                ],
            ),
        ),
    ];
    let (verdicts, events) = run(&engine, &frames);
    // The query name matches nothing; its answer is an alias of a telemetry name (CNAME
    // cloaking), judged by that name.
    assert_eq!(verdicts[0].action, PacketAction::Accept);
    assert_eq!(verdicts[1].action, PacketAction::Drop);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].via, Via::Dns);
    assert_eq!(events[0].name.as_deref(), Some("x.telemetry.acme.example"));
    assert_eq!(engine.counters.bypass_of(Bypass::Cname), 1);
    assert_eq!(engine.learned().len(), 1);

    // A flow to that address with no name of its own is attributed to the learned name.
    let raw = Hosts::new("192.0.2.10", 41000, "198.51.100.77", 443);
    let mut worker = engine.worker();
    let mut events = Vec::new();
    let mut last = None;
    for frame in tls_flow(&raw, &client_hello_with(&HelloOptions::default()), 0) {
        last = Some(worker.process(
            LinkType::Ethernet,
            &frame,
            Duration::from_secs(1_010),
            &mut events,
        ));
    }
    assert_eq!(last.unwrap().action, PacketAction::Drop);
    assert_eq!(events[0].via, Via::Learned);
    assert_eq!(events[0].name.as_deref(), Some("x.telemetry.acme.example"));

    // A flow to the same address naming another site is not blocked (shared CDN).
    let named = Hosts::new("192.0.2.10", 41001, "198.51.100.77", 443);
    let mut events = Vec::new();
    for frame in tls_flow(&named, &client_hello("www.example.org"), 0) {
        let verdict = worker.process(
            LinkType::Ethernet,
            &frame,
            Duration::from_secs(1_010),
            &mut events,
        );
        assert_eq!(verdict.action, PacketAction::Accept);
    }

    // After the TTL (300 s) the address is no longer attributed.
    let later = Hosts::new("192.0.2.10", 41002, "198.51.100.77", 443);
    let mut events = Vec::new();
    for frame in tls_flow(&later, &client_hello_with(&HelloOptions::default()), 0) {
        worker.process(
            LinkType::Ethernet,
            &frame,
            Duration::from_secs(1_400),
            &mut events,
        );
    }
    assert!(events.is_empty());
}

#[test]
fn learned_addresses_reach_a_peer_engine_and_are_not_shared_again() {
    let (gateway_a, gateway_b) = (engine(), engine());
    let (outbox_a, facts_a) = std::sync::mpsc::sync_channel(16);
    let (outbox_b, facts_b) = std::sync::mpsc::sync_channel(16);
    gateway_a.share_facts(outbox_a);
    gateway_b.share_facts(outbox_b);
    let dns = Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53);
    run(
        &gateway_a,
        &[dns.udp(
            false,
            &dns_response(
                1,
                "t.acme.example",
                1,
                &[
                    Answer::A("t.acme.example", [198, 51, 100, 88]),
                    Answer::A("t.acme.example", [198, 51, 100, 89]),
                ],
            ),
        )],
    );
    let shared: Vec<SharedFact> = facts_a.try_iter().collect();
    assert_eq!(shared.len(), 2, "{shared:?}");
    let SharedFact::Address {
        addr,
        name,
        expires,
    } = &shared[0]
    else {
        panic!("an address fact: {shared:?}");
    };
    assert_eq!(*addr, IpAddr::from([198, 51, 100, 88]));
    assert_eq!(&**name, "t.acme.example");
    // The record's TTL (300 s in the testkit's answers) from the answer's capture time.
    assert_eq!(*expires, 1_000 + 300);

    // Gateway B never saw the answer; with the fact imported it blocks a flow to the
    // address that carries no name of its own.
    let raw = Hosts::new("192.0.2.10", 41000, "198.51.100.88", 443);
    let hello = client_hello_with(&HelloOptions::default());
    let (verdicts, _) = run(&gateway_b, &tls_flow(&raw, &hello, 0));
    assert_eq!(
        verdicts[3].action,
        PacketAction::Accept,
        "before the import"
    );
    for fact in &shared {
        assert!(gateway_b.import(fact, Duration::from_secs(999)));
    }
    let raw = Hosts::new("192.0.2.10", 41001, "198.51.100.89", 443);
    let (verdicts, events) = run(&gateway_b, &tls_flow(&raw, &hello, 0));
    assert_eq!(verdicts[3].action, PacketAction::Drop);
    assert_eq!(events[0].via, Via::Learned);
    assert_eq!(
        facts_b.try_iter().count(),
        0,
        "imported facts are not shared again"
    );

    // An ECH configuration announced in an HTTPS record travels the same way.
    run(
        &gateway_a,
        &[dns.udp(
            false,
            &dns_response(
                2,
                "www.example.org",
                65,
                &[Answer::Https(
                    "www.example.org",
                    [192, 0, 2, 80],
                    [0; 16],
                    true,
                )],
            ),
        )],
    );
    let ech: Vec<SharedFact> = facts_a.try_iter().collect();
    assert_eq!(
        ech,
        [SharedFact::EchConfig {
            public_name: telestrip_testkit::ECH_PUBLIC_NAME.into(),
            config_id: telestrip_testkit::ECH_CONFIG_ID,
            expires: 1_000 + 300,
        }]
    );
    let tag = tag_of(telestrip_testkit::ECH_PUBLIC_NAME.as_bytes());
    let at = Duration::from_secs(1_001);
    assert!(!gateway_b
        .ech_configs
        .contains(tag, telestrip_testkit::ECH_CONFIG_ID, at));
    assert!(gateway_b.import(&ech[0], Duration::from_secs(999)));
    assert!(gateway_b
        .ech_configs
        .contains(tag, telestrip_testkit::ECH_CONFIG_ID, at));
    // An expired fact is refused.
    let stale = SharedFact::Address {
        addr: IpAddr::from([198, 51, 100, 90]),
        name: "t.acme.example".into(),
        expires: 999,
    };
    assert!(!gateway_b.import(&stale, Duration::from_secs(1_000)));
    assert_eq!(gateway_b.learned().len(), 2);
}

#[test]
fn ech_facade_name_falls_back_to_learned_address() {
    let engine = engine();
    let dns = Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53);
    run(
        &engine,
        &[dns.udp(
            false,
            &dns_response(
                1,
                "t.acme.example",
                1,
                &[Answer::A("t.acme.example", [198, 51, 100, 88])],
            ),
        )],
    );
    let hello = client_hello_with(&HelloOptions {
        names: vec!["public.cdn.example".into()],
        ech: true,
        ..HelloOptions::default()
    });
    let flow = Hosts::new("192.0.2.10", 41000, "198.51.100.88", 443);
    let (verdicts, events) = run(&engine, &tls_flow(&flow, &hello, 0));
    assert_eq!(events[0].via, Via::Learned);
    assert_eq!(verdicts[3].action, PacketAction::Drop);
}

#[test]
fn judges_every_dns_query_and_response() {
    let engine = engine();
    let dns = Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53);
    let frames = vec![
        dns.udp(true, &dns_query(1, "www.example.org", 1)),
        dns.udp(true, &dns_query(2, "T.ACME.example.", 28)),
        dns.udp(true, &dns_query(2, "t.acme.example", 28)),
        dns.udp(false, &dns_response(2, "t.acme.example", 28, &[])),
        dns.udp(true, &dns_query(3, "crash.acme.example", 1)),
    ];
    let (verdicts, events) = run(&engine, &frames);
    use PacketAction::*;
    assert_eq!(actions(&verdicts), [Accept, Drop, Drop, Drop, Reject]);
    // The retransmitted query is recorded once.
    let names: Vec<_> = events.iter().map(|e| e.name.clone().unwrap()).collect();
    assert_eq!(names, ["t.acme.example", "crash.acme.example"]);
    assert!(events.iter().all(|e| e.via == Via::Dns));
    assert_eq!(engine.counters.inspected_of(Via::Dns), 4);
}

#[test]
fn dns_over_tcp_with_split_and_packed_messages() {
    let engine = engine();
    let dns = Hosts::new("192.0.2.10", 40000, "192.0.2.53", 53);
    let framed = |m: Vec<u8>| {
        let mut out = (m.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&m);
        out
    };
    let first = framed(dns_query(1, "www.example.org", 1));
    let second = framed(dns_query(2, "t.acme.example", 1));
    let third = framed(dns_query(3, "crash.acme.example", 1));
    // first + second in one segment, third split over two.
    let mut packed = first.clone();
    packed.extend_from_slice(&second);
    let (third_a, third_b) = third.split_at(7);
    let mut seq = 1001u32;
    let mut frames = vec![
        dns.tcp(true, 1000, SYN, &[]),
        dns.tcp(false, 5000, SYN_ACK, &[]),
    ];
    for part in [&packed[..], third_a, third_b] {
        frames.push(dns.tcp(true, seq, ACK, part));
        seq += part.len() as u32;
    }
    let (verdicts, events) = run(&engine, &frames);
    use PacketAction::*;
    // After the blocked query the connection stays blocked: a retransmission of it would
    // otherwise be old data to the reassembler and pass.
    assert_eq!(actions(&verdicts), [Accept, Accept, Drop, Drop, Drop]);
    assert_eq!(events.len(), 2);
    let retransmission = dns.tcp(true, 1001, ACK, &packed);
    let mut worker = engine.worker();
    let verdict = worker.process(
        LinkType::Ethernet,
        &retransmission,
        Duration::from_secs(1_001),
        &mut Vec::new(),
    );
    assert_eq!(verdict.action, Drop);
    assert_eq!(verdicts[2].flow, FlowStatus::PerMessage);
}

#[test]
fn address_literal_sni_of_the_server_itself_is_reported_as_the_sni() {
    let h = Hosts::new("192.0.2.10", 40000, "203.0.113.9", 443);
    let (_, events) = run(&engine(), &tls_flow(&h, &client_hello("203.0.113.9"), 0));
    assert_eq!(events[0].via, Via::Sni);
    assert_eq!(events[0].name.as_deref(), Some("203.0.113.9"));
}

#[test]
fn server_speaking_first_decides_without_a_name() {
    let h = Hosts::new("192.0.2.10", 40000, "198.51.100.20", 22);
    let frames = vec![
        h.tcp(true, 1, SYN, &[]),
        h.tcp(false, 9, SYN_ACK, &[]),
        h.tcp(false, 10, ACK, b"SSH-2.0-OpenSSH_9.2\r\n"),
    ];
    let (verdicts, _) = run(&engine(), &frames);
    assert_eq!(verdicts[2].flow, FlowStatus::Decided);
}

#[test]
fn a_hello_in_many_small_segments_is_read_to_its_end() {
    // In-order segments bring new bytes: they never count towards the pending limit.
    let engine = engine_with(EngineConfig {
        max_pending_packets: 4,
        ..EngineConfig::default()
    });
    let hello = client_hello_with(&HelloOptions {
        names: vec!["t.acme.example".into()],
        padding: 400,
        ..HelloOptions::default()
    });
    let (_, events) = run(&engine, &tls_flow(&hosts(), &hello, 1));
    assert_eq!(events.len(), 1);
    assert_eq!(engine.counters.sum(|c| &c.pending_limit_hits), 0);
}

#[test]
fn gives_up_after_the_pending_packet_limit() {
    // Data behind a hole that never fills: decided without a name after 4 such packets.
    let engine = engine_with(EngineConfig {
        max_pending_packets: 4,
        ..EngineConfig::default()
    });
    let h = hosts();
    let hello = client_hello("t.acme.example");
    let mut frames = vec![
        h.tcp(true, 1000, SYN, &[]),
        h.tcp(false, 5000, SYN_ACK, &[]),
    ];
    for _ in 0..4 {
        frames.push(h.tcp(true, 1001 + 10, ACK, &hello[10..]));
    }
    let (verdicts, events) = run(&engine, &frames);
    assert!(events.is_empty());
    assert_eq!(verdicts[4].flow, FlowStatus::Pending);
    assert_eq!(verdicts[5].flow, FlowStatus::Decided);
    assert_eq!(engine.counters.sum(|c| &c.pending_limit_hits), 1);
}

#[test]
fn segments_that_overflow_the_buffer_are_dropped_and_the_flow_stays_pending() {
    let h = hosts();
    let hello = client_hello("t.acme.example");
    // Every other byte first: more holes than the buffer keeps.
    let mut frames = vec![
        h.tcp(true, 1000, SYN, &[]),
        h.tcp(false, 5000, SYN_ACK, &[]),
    ];
    let holes = crate::flow::stream::MAX_GAPS + 4;
    for i in 0..holes {
        let at = 2 * i + 1;
        frames.push(h.tcp(true, 1001 + at as u32, ACK, &hello[at..at + 1]));
    }
    // Then the whole hello in order, as the client's TCP sends it again.
    frames.push(h.tcp(true, 1001, ACK, &hello));
    let engine = engine_with(EngineConfig {
        max_pending_packets: u16::MAX,
        ..EngineConfig::default()
    });
    let (verdicts, events) = run(&engine, &frames);
    let dropped: Vec<bool> = verdicts[2..2 + holes]
        .iter()
        .map(|v| v.action == PacketAction::Drop && v.flow == FlowStatus::Pending)
        .collect();
    assert_eq!(
        dropped.iter().filter(|d| **d).count(),
        holes - crate::flow::stream::MAX_GAPS
    );
    assert_eq!(verdicts.last().unwrap().action, PacketAction::Drop);
    assert_eq!(events.len(), 1);
    assert_eq!(
        engine.counters.sum(|c| &c.stream_cap_hits),
        (holes - crate::flow::stream::MAX_GAPS) as u64
    );
    // In dry run nothing is dropped, the overflow is still counted.
    let engine = engine_with(EngineConfig {
        enforce: false,
        max_pending_packets: u16::MAX,
        ..EngineConfig::default()
    });
    let (verdicts, _) = run(&engine, &frames);
    assert!(verdicts.iter().all(|v| v.action == PacketAction::Accept));
    assert!(engine.counters.sum(|c| &c.stream_cap_hits) > 0);
}

#[test]
fn a_full_table_evicts_connections_without_data_once_a_second_then_refuses_but_judges() {
    let engine = engine_with(EngineConfig {
        max_flows: 4,
        ..EngineConfig::default()
    });
    let mut frames = Vec::new();
    for port in 0..10u16 {
        let h = Hosts::new("192.0.2.10", 30000 + port, "198.51.100.20", 443);
        frames.push(h.tcp(true, 1, SYN, &[]));
    }
    let blocked = Hosts::new("192.0.2.10", 50000, "198.51.100.20", 443);
    frames.push(blocked.tcp(true, 2, ACK, &client_hello("t.acme.example")));
    let (verdicts, events) = run(&engine, &frames);
    // The 5th SYN finds the table full: the 4 connections without data go. The 9th finds
    // it full again within the same second: refused, as is everything after it.
    assert_eq!(engine.flows().len(), 4);
    assert_eq!(engine.flows().expired.load(Ordering::Relaxed), 4);
    assert_eq!(engine.flows().refused.load(Ordering::Relaxed), 3);
    assert_eq!(verdicts.last().unwrap().action, PacketAction::Drop);
    assert_eq!(verdicts.last().unwrap().flow, FlowStatus::Untracked);
    assert_eq!(events.len(), 1);
}

/// Flows idle for 10 s (pending) or 20 s (decided) expire.
fn engine_with_short_timeouts() -> Engine {
    engine_with(EngineConfig {
        timeouts: Timeouts {
            pending: 10,
            tcp: 20,
            udp: 20,
        },
        ..EngineConfig::default()
    })
}

#[test]
fn idle_flows_expire() {
    let engine = engine_with_short_timeouts();
    let mut worker = engine.worker();
    let mut events = Vec::new();
    let h = hosts();
    worker.process(
        LinkType::Ethernet,
        &h.tcp(true, 1, SYN, &[]),
        Duration::from_secs(100),
        &mut events,
    );
    assert_eq!(engine.flows().len(), 1);
    let other = Hosts::new("192.0.2.11", 1, "198.51.100.20", 443);
    worker.process(
        LinkType::Ethernet,
        &other.tcp(true, 1, SYN, &[]),
        Duration::from_secs(200),
        &mut events,
    );
    assert_eq!(engine.flows().len(), 1);
    assert_eq!(engine.flows().expired.load(Ordering::Relaxed), 1);
}

#[test]
fn a_busy_decided_flow_never_expires_although_its_thread_answers_it_from_its_cache() {
    let engine = engine_with_short_timeouts();
    let mut worker = engine.worker();
    let mut events = Vec::new();
    let h = hosts();
    let mut at = |frame: &[u8], ms: u64| {
        worker.process(
            LinkType::Ethernet,
            frame,
            Duration::from_millis(ms),
            &mut events,
        )
    };
    at(&h.tcp(true, 1, SYN, &[]), 0);
    at(&h.tcp(true, 2, ACK, &client_hello("t.acme.example")), 1);
    let data = h.tcp(false, 9, ACK, &[0; 100]);
    // Ten packets a second for 100 s: far longer than the 20 s idle timeout, with sweeps.
    for ms in (2..100_000).step_by(100) {
        assert_eq!(at(&data, ms).action, PacketAction::Drop, "at {ms} ms");
    }
    assert_eq!(engine.flows().expired.load(Ordering::Relaxed), 0);
    assert_eq!(engine.flows().len(), 1);
    // A new connection on the same 5-tuple is inspected afresh, cache or not.
    let verdict = at(&h.tcp(true, 1, SYN, &[]), 100_001);
    assert_eq!(verdict.flow, FlowStatus::Pending);
    let verdict = at(
        &h.tcp(true, 2, ACK, &client_hello("www.example.org")),
        100_002,
    );
    assert_eq!(verdict.action, PacketAction::Accept);
    assert_eq!(at(&data, 100_003).action, PacketAction::Accept);
}

#[test]
fn garbage_frames_are_counted_not_fatal() {
    let engine = engine();
    let mut worker = engine.worker();
    let mut events = Vec::new();
    for frame in [&[][..], &[0u8; 5][..], &[0xffu8; 60][..]] {
        let verdict = worker.process(LinkType::Ethernet, frame, Duration::ZERO, &mut events);
        assert_eq!(verdict, Verdict::UNTRACKED);
    }
    let errors: u64 = Layer::ALL
        .iter()
        .map(|l| engine.counters.parse_errors_of(*l))
        .sum();
    assert!(errors + engine.counters.sum(|c| &c.packets_not_ip) == 3);
}

#[test]
fn swapped_rules_apply_to_new_flows() {
    let engine = engine();
    let empty = RuleSet::empty();
    engine.swap_rules(empty);
    let mut worker = engine.worker();
    worker.refresh_rules();
    let mut events = Vec::new();
    for frame in tls_flow(&hosts(), &client_hello("t.acme.example"), 0) {
        worker.process(LinkType::Ethernet, &frame, Duration::ZERO, &mut events);
    }
    assert!(events.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn never_panics_on_arbitrary_frame_sequences(
        frames in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..120), 1..20),
        payloads in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..10),
    ) {
        let engine = engine();
        let mut worker = engine.worker();
        let mut events = Vec::new();
        for frame in &frames {
            worker.process(LinkType::Ethernet, frame, Duration::ZERO, &mut events);
        }
        // Arbitrary payloads on real TCP, UDP and DNS flows.
        let tcp = hosts();
        let udp = Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53);
        let mut seq = 1u32;
        worker.process(LinkType::Ethernet, &tcp.tcp(true, 0, SYN, &[]), Duration::ZERO, &mut events);
        for payload in &payloads {
            worker.process(LinkType::Ethernet, &tcp.tcp(true, seq, ACK, payload), Duration::ZERO, &mut events);
            worker.process(LinkType::Ethernet, &udp.udp(true, payload), Duration::ZERO, &mut events);
            worker.process(LinkType::Ethernet, &udp.udp(false, payload), Duration::ZERO, &mut events);
            seq = seq.wrapping_add(payload.len() as u32);
        }
    }
}

#[test]
fn a_new_connection_on_a_reused_five_tuple_is_inspected_again() {
    let engine = engine();
    let h = hosts();
    // An allowed flow, decided and cached...
    let (first, _) = run(&engine, &tls_flow(&h, &client_hello("www.example.org"), 0));
    assert!(first.iter().all(|v| v.action == PacketAction::Accept));
    // ...then the client reuses its port for a telemetry connection: a new SYN means a new
    // flow, never the old verdict.
    let (second, events) = run(&engine, &tls_flow(&h, &client_hello("t.acme.example"), 0));
    assert_eq!(second[3].action, PacketAction::Drop);
    assert_eq!(events.len(), 1);
    assert_eq!(engine.counters.sum(|c| &c.flows_new), 2);
}

#[test]
fn finds_sni_in_tcp_fast_open_data_in_the_syn() {
    let h = hosts();
    let hello = client_hello("t.acme.example");
    // RFC 7413: the SYN carries data, which starts at the SYN's sequence number plus one.
    let frames = vec![
        h.tcp(true, 1000, SYN, &hello),
        h.tcp(false, 5000, SYN_ACK, &[]),
    ];
    let (verdicts, events) = run(&engine(), &frames);
    assert_eq!(verdicts[0].action, PacketAction::Drop);
    assert_eq!(events.len(), 1);

    // Only part of the ClientHello in the SYN, the rest in the next segment.
    let (first, rest) = hello.split_at(40);
    let frames = vec![
        h.tcp(true, 7000, SYN, first),
        h.tcp(true, 7001 + first.len() as u32, ACK, rest),
    ];
    let (verdicts, events) = run(&engine(), &frames);
    assert_eq!(verdicts[1].action, PacketAction::Drop);
    assert_eq!(events.len(), 1);
}

mod quic_flows {
    use super::*;
    use crate::inspect::quic::{VERSION_1, VERSION_2};
    use telestrip_testkit::{handshake_client_hello, quic_first_flight};

    fn quic_hosts() -> Hosts {
        Hosts::new("192.0.2.10", 50_000, "198.51.100.20", 443)
    }

    /// The client's first flight as frames, then a server reply and more client packets.
    fn quic_frames(datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let hosts = quic_hosts();
        let mut frames: Vec<Vec<u8>> = datagrams.iter().map(|d| hosts.udp(true, d)).collect();
        frames.push(hosts.udp(false, &[0xc3; 1200]));
        frames.push(hosts.udp(true, &[0x43; 60]));
        frames
    }

    #[test]
    fn a_quic_flow_to_telemetry_is_dropped_from_its_initial_on() {
        for version in [VERSION_1, VERSION_2] {
            let hello = handshake_client_hello("x.telemetry.acme.example", 0);
            let frames = quic_frames(&quic_first_flight(version, &hello, 4096, 1, &[]));
            let engine = engine();
            let (verdicts, events) = run(&engine, &frames);
            assert_eq!(actions(&verdicts), [PacketAction::Drop; 3]);
            assert_eq!(verdicts[0].flow, FlowStatus::Decided);
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].via, Via::Quic);
            assert_eq!(events[0].name.as_deref(), Some("x.telemetry.acme.example"));
            assert_eq!(events[0].protocol, Protocol::Udp);
            assert_eq!(engine.counters.inspected_of(Via::Quic), 1);
        }
    }

    /// Only a client's Initial can carry a second hello: the server's Initials of an allowed
    /// flow (one per handshake, often two) are answered from the verdict cache like any
    /// other packet of the flow.
    #[test]
    fn on_an_allowed_quic_flow_only_the_clients_initials_bypass_the_verdict_cache() {
        let hello = handshake_client_hello("www.example.org", 0);
        let first_flight = quic_first_flight(VERSION_1, &hello, 4096, 1, &[]);
        let engine = engine();
        let mut worker = engine.worker();
        let mut events = Vec::new();
        let time = Duration::from_secs(1_000);
        let hosts = quic_hosts();
        for datagram in &first_flight {
            let verdict = worker.process(
                LinkType::Ethernet,
                &hosts.udp(true, datagram),
                time,
                &mut events,
            );
            assert_eq!(verdict.action, PacketAction::Accept);
        }
        // A long-header Initial either way: the cache tells the two apart by direction.
        let initial = telestrip_testkit::quic_initial_to(&[9; 8], &hello);
        let from_server = hosts.udp(false, &initial);
        let from_client = hosts.udp(true, &initial);
        let answered = worker.cached_verdict(LinkType::Ethernet, &from_server, time);
        assert_eq!(answered.map(|v| v.action), Some(PacketAction::Accept));
        assert_eq!(
            worker.cached_verdict(LinkType::Ethernet, &from_client, time),
            None
        );
    }

    #[test]
    fn draft_and_google_quic_flows_to_telemetry_are_dropped() {
        use crate::inspect::gquic::build_chlo;
        use crate::inspect::quic::{DRAFT_29, Q050, T051};
        use telestrip_testkit::{gquic_protected_initial, gquic_q046_initial};
        let name = "x.telemetry.acme.example";
        let hello = handshake_client_hello(name, 0);
        let chlo = build_chlo(&[(b"SNI\0", name.as_bytes()), (b"VER\0", b"Q046")]);
        let first_flights = [
            quic_first_flight(DRAFT_29, &hello, 4096, 1, &[]),
            vec![gquic_q046_initial(&chlo)],
            vec![gquic_protected_initial(Q050, &chlo)],
            vec![gquic_protected_initial(T051, &hello)],
        ];
        for (i, flight) in first_flights.iter().enumerate() {
            let engine = engine();
            let (verdicts, events) = run(&engine, &quic_frames(flight));
            assert_eq!(verdicts[0].action, PacketAction::Drop, "flight {i}");
            assert_eq!(events.len(), 1, "flight {i}");
            assert_eq!(events[0].name.as_deref(), Some(name));
            assert_eq!(events[0].via, Via::Quic);
            assert_eq!(engine.counters.bypass_of(Bypass::QuicUnreadable), 0);
        }
    }

    /// A long-header datagram of a version nobody publishes keys for.
    fn unreadable_initial() -> Vec<u8> {
        let mut datagram = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8];
        datagram.extend_from_slice(&[0x11; 8]);
        datagram.push(0);
        datagram.resize(1200, 0x77);
        datagram
    }

    #[test]
    fn quic_that_cannot_be_read_follows_the_quic_unreadable_policy() {
        let hosts = quic_hosts();
        let frames: Vec<Vec<u8>> = (0..16)
            .map(|_| hosts.udp(true, &unreadable_initial()))
            .collect();
        for (policy, last, recorded) in [
            (Policy::Allow, PacketAction::Accept, None),
            (Policy::Log, PacketAction::Accept, Some(Action::Log)),
            (Policy::Drop, PacketAction::Drop, Some(Action::Drop)),
        ] {
            let engine = engine_with(EngineConfig {
                quic_unreadable: policy,
                ..EngineConfig::default()
            });
            let (verdicts, events) = run(&engine, &frames);
            // Waits for an Initial it can read, within the pending bound, then decides.
            assert_eq!(verdicts[14].flow, FlowStatus::Pending, "{policy:?}");
            assert_eq!(verdicts[15].action, last, "{policy:?}");
            assert_eq!(verdicts[15].flow, FlowStatus::Decided, "{policy:?}");
            assert_eq!(engine.counters.bypass_of(Bypass::QuicUnreadable), 1);
            assert_eq!(events.first().map(|e| e.applied), recorded, "{policy:?}");
            if let Some(event) = events.first() {
                assert_eq!(&*event.rule, QUIC_POLICY_RULE);
                assert_eq!(event.via, Via::Quic);
                assert_eq!(event.name, None);
            }
        }
    }

    #[test]
    fn a_dry_run_logs_what_the_quic_policy_would_drop() {
        let engine = engine_with(EngineConfig {
            quic_unreadable: Policy::Drop,
            enforce: false,
            ..EngineConfig::default()
        });
        let hosts = quic_hosts();
        let frames: Vec<Vec<u8>> = (0..16)
            .map(|_| hosts.udp(true, &unreadable_initial()))
            .collect();
        let (verdicts, events) = run(&engine, &frames);
        assert_eq!(verdicts[15].action, PacketAction::Accept);
        assert_eq!(events[0].applied, Action::Log);
    }

    #[test]
    fn after_version_negotiation_the_initial_in_the_agreed_version_is_judged() {
        // The client first tries a version telestrip cannot read (a reserved one, RFC 9000
        // §15), the server answers with Version Negotiation (version 0, listing version 1),
        // and the client starts again in version 1 on the same ports.
        let mut unknown = vec![0xc0, 0x0a, 0x0a, 0x0a, 0x0a, 8];
        unknown.extend_from_slice(&[0x11; 8]);
        unknown.push(0);
        unknown.resize(1200, 0);
        let mut negotiation = vec![0x80, 0, 0, 0, 0, 0, 8];
        negotiation.extend_from_slice(&[0x11; 8]);
        negotiation.extend_from_slice(&1u32.to_be_bytes());
        let hello = handshake_client_hello("x.telemetry.acme.example", 0);
        let initial = quic_first_flight(VERSION_1, &hello, 4096, 1, &[]).remove(0);
        let hosts = quic_hosts();
        let frames = vec![
            hosts.udp(true, &unknown),
            hosts.udp(false, &negotiation),
            hosts.udp(true, &initial),
        ];
        let (verdicts, events) = run(&engine(), &frames);
        assert_eq!(verdicts[0].flow, FlowStatus::Pending);
        assert_eq!(verdicts[1].flow, FlowStatus::Pending);
        assert_eq!(
            actions(&verdicts),
            [
                PacketAction::Accept,
                PacketAction::Accept,
                PacketAction::Drop
            ]
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].via, Via::Quic);
    }

    #[test]
    fn a_hello_split_over_datagrams_with_shuffled_frames_waits_for_the_last_piece() {
        let hello = handshake_client_hello("x.telemetry.acme.example", 1500);
        let flight = quic_first_flight(
            VERSION_1,
            &hello,
            150,
            7,
            &[9, 3, 0, 12, 6, 1, 10, 4, 7, 2, 11, 5, 8],
        );
        assert_eq!(flight.len(), 2);
        // The server's Initial arrives between the client's two datagrams.
        let hosts = quic_hosts();
        let frames = vec![
            hosts.udp(true, &flight[0]),
            hosts.udp(false, &[0xc3; 1200]),
            hosts.udp(true, &flight[1]),
            hosts.udp(true, &[0x43; 60]),
        ];
        let (verdicts, events) = run(&engine(), &frames);
        assert_eq!(verdicts[0].flow, FlowStatus::Pending);
        assert_eq!(verdicts[1].flow, FlowStatus::Pending);
        assert_eq!(
            actions(&verdicts),
            [
                PacketAction::Accept,
                PacketAction::Accept,
                PacketAction::Drop,
                PacketAction::Drop
            ]
        );
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn every_order_of_a_three_datagram_flight_gives_the_same_verdict() {
        let hello = handshake_client_hello("x.telemetry.acme.example", 2500);
        let flight = quic_first_flight(VERSION_2, &hello, 500, 2, &[]);
        assert_eq!(flight.len(), 3);
        for order in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let datagrams: Vec<Vec<u8>> = order.iter().map(|&i| flight[i].clone()).collect();
            let (verdicts, events) = run(&engine(), &quic_frames(&datagrams));
            assert_eq!(verdicts[2].action, PacketAction::Drop, "order {order:?}");
            assert_eq!(events.len(), 1, "order {order:?}");
        }
    }

    #[test]
    fn a_quic_hello_sent_again_is_judged_and_recorded_once() {
        // A `log` rule records the flow; the client resends its Initial (packet loss), which
        // the firewall queues again for the decoy check. Then a decoy-like second hello
        // with another name is still judged.
        let logged = handshake_client_hello("experiments.acme.example", 0);
        let initial = quic_first_flight(VERSION_1, &logged, 4096, 1, &[]).remove(0);
        let hosts = quic_hosts();
        let engine = engine();
        let (verdicts, events) = run(
            &engine,
            &[
                hosts.udp(true, &initial),
                hosts.udp(false, &[0xc3; 1200]),
                hosts.udp(true, &initial),
                hosts.udp(true, &initial),
            ],
        );
        assert_eq!(actions(&verdicts), [PacketAction::Accept; 4]);
        assert_eq!(events.len(), 1, "one event for the flow: {events:?}");
        assert_eq!(engine.counters.inspected_of(Via::Quic), 1);

        let other = handshake_client_hello("x.telemetry.acme.example", 0);
        let blocked = quic_first_flight(VERSION_1, &other, 4096, 1, &[]).remove(0);
        let fresh = super::engine();
        let (verdicts, events) = run(
            &fresh,
            &[
                hosts.udp(true, &initial),
                hosts.udp(true, &initial),
                hosts.udp(true, &blocked),
            ],
        );
        assert_eq!(verdicts[2].action, PacketAction::Drop);
        assert_eq!(
            events.len(),
            2,
            "the logged hello once, the blocked one: {events:?}"
        );
        assert_eq!(fresh.counters.inspected_of(Via::Quic), 2);
    }

    #[test]
    fn an_allowed_quic_flow_is_accepted_and_handed_to_the_kernel() {
        let hello = handshake_client_hello("www.example.org", 0);
        let frames = quic_frames(&quic_first_flight(VERSION_1, &hello, 4096, 1, &[]));
        let (verdicts, events) = run(&engine(), &frames);
        assert_eq!(actions(&verdicts), [PacketAction::Accept; 3]);
        assert_eq!(verdicts[0].flow, FlowStatus::Decided);
        assert!(events.is_empty());
    }

    #[test]
    fn other_udp_is_decided_at_once_and_a_broken_initial_waits_for_one_that_decrypts() {
        let hosts = quic_hosts();
        let game = Hosts::new("192.0.2.10", 50_000, "198.51.100.20", 27_015);
        let (verdicts, _) = run(&engine(), &[game.udp(true, b"not quic at all")]);
        assert_eq!(verdicts[0].flow, FlowStatus::Decided);
        let hello = handshake_client_hello("x.telemetry.acme.example", 0);
        let mut datagram = quic_first_flight(VERSION_1, &hello, 4096, 1, &[]).remove(0);
        datagram[300] ^= 0xff;
        let engine = engine();
        // A decoy with broken protection (the server drops it) does not decide the flow.
        let (verdicts, events) = run(&engine, &[hosts.udp(true, &datagram)]);
        assert_eq!(verdicts[0].flow, FlowStatus::Pending);
        assert_eq!(verdicts[0].action, PacketAction::Accept);
        assert!(events.is_empty());
        assert_eq!(engine.counters.parse_errors_of(Layer::Quic), 1);
        // Only broken ones, up to the pending bound: then the flow's QUIC is unreadable.
        let engine = super::engine();
        let broken: Vec<Vec<u8>> = (0..16).map(|_| hosts.udp(true, &datagram)).collect();
        let (verdicts, _) = run(&engine, &broken);
        assert_eq!(verdicts[14].flow, FlowStatus::Pending);
        assert_eq!(verdicts[15].flow, FlowStatus::Decided);
        assert_eq!(engine.counters.bypass_of(Bypass::QuicUnreadable), 1);
    }

    #[test]
    fn junk_coalesced_behind_the_initial_does_not_hide_the_hello() {
        let hello = handshake_client_hello("x.telemetry.acme.example", 0);
        let mut datagram = quic_first_flight(VERSION_1, &hello, 4096, 1, &[]).remove(0);
        // A long-header packet whose length runs past the end of the datagram.
        datagram.extend_from_slice(&[0xe0, 0, 0, 0, 1, 0, 0, 0x7f]);
        let (verdicts, events) = run(&engine(), &[quic_hosts().udp(true, &datagram)]);
        assert_eq!(verdicts[0].action, PacketAction::Drop);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn a_junk_datagram_first_does_not_wave_a_quic_flow_through() {
        let hello = handshake_client_hello("x.telemetry.acme.example", 0);
        let initial = quic_first_flight(VERSION_1, &hello, 4096, 1, &[]).remove(0);
        let hosts = quic_hosts();
        let (verdicts, events) = run(
            &engine(),
            &[hosts.udp(true, b"junk"), hosts.udp(true, &initial)],
        );
        assert_eq!(verdicts[0].flow, FlowStatus::Pending);
        assert_eq!(verdicts[1].action, PacketAction::Drop);
        assert_eq!(events.len(), 1);
        // Not QUIC's port: decided at once.
        let other = Hosts::new("192.0.2.10", 50_000, "198.51.100.20", 5000);
        let (verdicts, _) = run(&engine(), &[other.udp(true, b"junk")]);
        assert_eq!(verdicts[0].flow, FlowStatus::Decided);
    }

    #[test]
    fn a_hello_that_never_completes_is_decided_after_the_packet_limit() {
        let hello = handshake_client_hello("x.telemetry.acme.example", 0);
        // Only the second half of the hello, resent again and again.
        let flight = quic_first_flight(VERSION_1, &hello, 100, 1, &[]);
        let hosts = quic_hosts();
        let frames: Vec<Vec<u8>> = (0..20).map(|_| hosts.udp(true, &flight[1])).collect();
        let engine = engine();
        let (verdicts, _) = run(&engine, &frames);
        let decided_at = verdicts.iter().position(|v| v.flow == FlowStatus::Decided);
        assert_eq!(decided_at, Some(15));
        assert_eq!(engine.counters.sum(|c| &c.pending_limit_hits), 1);
    }
}

mod bypass {
    use super::*;
    use crate::inspect::dns::TYPE_HTTPS;
    use crate::inspect::quic::VERSION_1;
    use crate::stats::Bypass;
    use telestrip_testkit::{handshake_client_hello, quic_first_flight};

    fn dns() -> Hosts {
        Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53)
    }

    #[test]
    fn https_queries_for_blocked_names_are_blocked_and_their_hints_learned() {
        let engine = engine();
        let hinted_v6 = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99,
        ];
        let frames = vec![
            dns().udp(true, &dns_query(3, "t.acme.example", TYPE_HTTPS)),
            dns().udp(
                false,
                &dns_response(
                    3,
                    "t.acme.example",
                    TYPE_HTTPS,
                    &[Answer::Https(
                        "t.acme.example",
                        [198, 51, 100, 99],
                        hinted_v6,
                        true,
                    )],
                ),
            ),
        ];
        let (verdicts, events) = run(&engine, &frames);
        assert_eq!(verdicts[0].action, PacketAction::Drop);
        assert_eq!(events.len(), 1);
        assert_eq!(engine.counters.bypass_of(Bypass::Svcb), 1);
        // Both hints are learned: nameless flows to them are attributed and blocked.
        assert_eq!(engine.learned().len(), 2);
        for server in ["198.51.100.99", "2001:db8::99"] {
            let raw = Hosts::new(
                if server.contains(':') {
                    "2001:db8::10"
                } else {
                    "192.0.2.10"
                },
                41_000,
                server,
                443,
            );
            let (verdicts, events) = run(
                &engine,
                &tls_flow(&raw, &client_hello_with(&HelloOptions::default()), 0),
            );
            assert_eq!(
                verdicts.last().unwrap().action,
                PacketAction::Drop,
                "{server}"
            );
            assert_eq!(events[0].via, Via::Learned);
        }
        assert_eq!(engine.counters.bypass_of(Bypass::LearnedAddress), 2);
    }

    #[test]
    fn an_a_query_is_no_svcb_bypass() {
        let engine = engine();
        run(
            &engine,
            &[dns().udp(true, &dns_query(3, "t.acme.example", 1))],
        );
        assert_eq!(engine.counters.bypass_of(Bypass::Svcb), 0);
    }

    #[test]
    fn quic_and_ech_attempts_are_counted() {
        let engine = engine();
        let hello = handshake_client_hello("x.telemetry.acme.example", 0);
        let quic = Hosts::new("192.0.2.10", 50_000, "198.51.100.20", 443);
        let flight = quic_first_flight(VERSION_1, &hello, 4096, 1, &[]);
        run(&engine, &[quic.udp(true, &flight[0])]);
        // An allowed name over QUIC is no attempt to get around the filter.
        let allowed = quic_first_flight(
            VERSION_1,
            &handshake_client_hello("www.example.org", 0),
            4096,
            1,
            &[],
        );
        let other = Hosts::new("192.0.2.10", 50_001, "198.51.100.20", 443);
        run(&engine, &[other.udp(true, &allowed[0])]);
        assert_eq!(engine.counters.bypass_of(Bypass::Quic), 1);
        let ech = client_hello_with(&HelloOptions {
            names: vec!["public.cdn.example".into()],
            ech: true,
            ..HelloOptions::default()
        });
        run(&engine, &tls_flow(&hosts(), &ech, 0));
        // No HTTPS record announced that configuration: GREASE, no bypass attempt.
        assert_eq!(engine.counters.sum(|c| &c.ech_grease), 1);
        assert_eq!(engine.counters.bypass_of(Bypass::Ech), 0);
    }
}

#[test]
fn flows_to_blocked_doh_resolvers_count_as_a_bypass() {
    let files = load_sources(vec![Source {
        name: "doh.yaml".into(),
        text: "vendor: resolvers\nrules:\n  - id: doh-example\n    action: drop\n    category: doh\n    domains: [dns.resolver.example]\n".into(),
    }])
    .unwrap();
    let engine = Engine::new(RuleSet::compile(&files).unwrap(), EngineConfig::default());
    let (verdicts, _) = run(
        &engine,
        &tls_flow(&hosts(), &client_hello("dns.resolver.example"), 0),
    );
    assert_eq!(verdicts.last().unwrap().action, PacketAction::Drop);
    assert_eq!(engine.counters.bypass_of(crate::stats::Bypass::Doh), 1);
}

#[test]
fn the_bundled_resolver_pack_blocks_encrypted_dns_and_answers_firefoxs_canary() {
    let (_, rules) = crate::rules::load_rules(None).unwrap();
    let engine = Engine::new(rules, EngineConfig::default());
    // DoH by name.
    let doh = Hosts::new("192.0.2.10", 40_100, "192.0.2.77", 443);
    let (verdicts, events) = run(
        &engine,
        &tls_flow(&doh, &client_hello("mozilla.cloudflare-dns.com"), 0),
    );
    // Refused at once, so the browser falls back to the network's resolver without waiting.
    assert_eq!(verdicts.last().unwrap().action, PacketAction::Reject);
    assert_eq!(&*events[0].rule, "doh-public-resolver-names");
    // DoT to a resolver address (no SNI needed); plain DNS to the same address passes.
    let dot = Hosts::new("192.0.2.10", 40_101, "1.1.1.1", 853);
    let (verdicts, _) = run(
        &engine,
        &tls_flow(&dot, &client_hello_with(&HelloOptions::default()), 0),
    );
    assert_eq!(verdicts.last().unwrap().action, PacketAction::Reject);
    let plain = Hosts::new("192.0.2.10", 40_102, "1.1.1.1", 53);
    let (verdicts, _) = run(
        &engine,
        &[plain.udp(true, &dns_query(5, "www.example.org", 1))],
    );
    assert_eq!(verdicts[0].action, PacketAction::Accept);
    // The canary query is rejected (the gateway answers NXDOMAIN).
    let (verdicts, _) = run(
        &engine,
        &[plain.udp(true, &dns_query(6, "use-application-dns.net", 1))],
    );
    assert_eq!(verdicts[0].action, PacketAction::Reject);
    assert_eq!(engine.counters.bypass_of(crate::stats::Bypass::Doh), 3);
}

mod ech {
    use super::*;
    use crate::inspect::dns::TYPE_HTTPS;
    use crate::stats::Bypass;
    use telestrip_testkit::{ECH_CONFIG_ID, ECH_PUBLIC_NAME};

    fn engine_with_policy(ech_policy: EchPolicy) -> Engine {
        let engine = engine_with(EngineConfig {
            ech_policy,
            ..EngineConfig::default()
        });
        // A shop behind a CDN announces ECH with the CDN's public name.
        let dns = Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53);
        let answer = Answer::Https("www.shop.example", [198, 51, 100, 5], [0; 16], true);
        run(
            &engine,
            &[dns.udp(
                false,
                &dns_response(4, "www.shop.example", TYPE_HTTPS, &[answer]),
            )],
        );
        engine
    }

    fn hello(config_id: u8) -> Vec<u8> {
        client_hello_with(&HelloOptions {
            names: vec![ECH_PUBLIC_NAME.into()],
            ech: true,
            ech_config_id: config_id,
            ..HelloOptions::default()
        })
    }

    #[test]
    fn an_announced_config_is_real_ech_any_other_is_grease() {
        let engine = engine_with_policy(EchPolicy::Allow);
        let (verdicts, events) = run(&engine, &tls_flow(&hosts(), &hello(ECH_CONFIG_ID), 0));
        assert_eq!(verdicts.last().unwrap().action, PacketAction::Accept);
        assert!(events.is_empty());
        let other = Hosts::new("192.0.2.10", 40_001, "198.51.100.20", 443);
        run(&engine, &tls_flow(&other, &hello(0x07), 0));
        assert_eq!(engine.counters.sum(|c| &c.ech_real), 1);
        assert_eq!(engine.counters.sum(|c| &c.ech_grease), 1);
        assert_eq!(engine.counters.bypass_of(Bypass::Ech), 1);
    }

    #[test]
    fn the_log_policy_records_real_ech_and_lets_it_pass() {
        let engine = engine_with_policy(EchPolicy::Log);
        let (verdicts, events) = run(&engine, &tls_flow(&hosts(), &hello(ECH_CONFIG_ID), 0));
        assert_eq!(verdicts.last().unwrap().action, PacketAction::Accept);
        assert_eq!(events.len(), 1);
        assert_eq!(&*events[0].rule, ECH_POLICY_RULE);
        assert_eq!(events[0].applied, Action::Log);
        // GREASE ECH is no news.
        let other = Hosts::new("192.0.2.10", 40_001, "198.51.100.20", 443);
        let (_, events) = run(&engine, &tls_flow(&other, &hello(0x07), 0));
        assert!(events.is_empty());
    }

    #[test]
    fn the_drop_policy_blocks_real_ech_only() {
        let engine = engine_with_policy(EchPolicy::Drop);
        let (verdicts, events) = run(&engine, &tls_flow(&hosts(), &hello(ECH_CONFIG_ID), 0));
        assert_eq!(verdicts.last().unwrap().action, PacketAction::Drop);
        assert_eq!(events[0].applied, Action::Drop);
        let series: Vec<_> = engine
            .flow_counts
            .snapshot()
            .into_iter()
            .filter(|(s, n)| &*s.rule == ECH_POLICY_RULE && *n == 1)
            .collect();
        assert_eq!(series.len(), 1);
        let other = Hosts::new("192.0.2.10", 40_001, "198.51.100.20", 443);
        let (verdicts, _) = run(&engine, &tls_flow(&other, &hello(0x07), 0));
        assert_eq!(verdicts.last().unwrap().action, PacketAction::Accept);
    }
}

#[test]
fn an_address_literal_as_sni_or_host_is_judged_by_cidr_rules() {
    let flows = [
        (
            tls_flow(&hosts(), &client_hello("203.0.113.7"), 1400),
            Via::Sni,
        ),
        (
            tls_flow(&hosts(), &http_get("203.0.113.9:8080"), 1400),
            Via::Http,
        ),
    ];
    for (frames, via) in flows {
        let engine = engine();
        let (verdicts, events) = run(&engine, &frames);
        assert_eq!(verdicts.last().unwrap().action, PacketAction::Drop, "{via}");
        assert_eq!(events.len(), 1);
        assert_eq!(&*events[0].rule, "acme-hardcoded");
        assert_eq!(events[0].via, via);
        assert!(events[0].name.as_deref().unwrap().starts_with("203.0.113."));
        assert_eq!(engine.counters.sum(|c| &c.address_literals), 1);
    }
    // An IPv6 literal in Host, judged by a CIDR rule for it.
    let files = load_sources(vec![Source {
        name: "v6.yaml".into(),
        text: "vendor: acme\nrules:\n  - id: acme-v6\n    action: drop\n    cidrs: [2001:db8:7::/48]\n".into(),
    }])
    .unwrap();
    let v6_engine = Engine::new(RuleSet::compile(&files).unwrap(), EngineConfig::default());
    let request = b"GET / HTTP/1.1\r\nHost: [2001:db8:7::9]:80\r\n\r\n";
    let (verdicts, events) = run(&v6_engine, &tls_flow(&hosts(), request, 1400));
    assert_eq!(verdicts.last().unwrap().action, PacketAction::Drop);
    assert_eq!(events[0].name.as_deref(), Some("2001:db8:7::9"));
    assert_eq!(events[0].via, Via::Http);
    // A literal no rule covers: the flow passes, still counted as an address literal.
    let engine = engine();
    let (verdicts, events) = run(
        &engine,
        &tls_flow(&hosts(), &client_hello("192.0.2.99"), 1400),
    );
    assert_eq!(verdicts.last().unwrap().action, PacketAction::Accept);
    assert!(events.is_empty());
    assert_eq!(engine.counters.sum(|c| &c.address_literals), 1);
}

mod quic_first_flights {
    use super::*;
    use crate::inspect::quic::{crypto_frame, protect_client_initial, VERSION_1};
    use telestrip_testkit::handshake_client_hello;

    /// A 0-RTT packet (type 1 in version 1) with an opaque body, as a client sends its early
    /// data next to its Initial.
    fn zero_rtt(len: usize) -> Vec<u8> {
        let mut packet = vec![0xd0, 0, 0, 0, 1, 8];
        packet.extend_from_slice(&[0x22; 8]);
        packet.push(0);
        packet.extend_from_slice(&(0x4000 | len as u16).to_be_bytes());
        packet.extend_from_slice(&vec![0x5a; len]);
        packet
    }

    #[test]
    fn a_hello_whose_initials_change_connection_id_with_0rtt_beside_is_read() {
        // The client's hello in two datagrams whose Initials have different Destination
        // Connection IDs (each packet's keys come from its own), the second with a 0-RTT
        // packet coalesced behind it, and a 0-RTT datagram between them.
        let hello = handshake_client_hello("x.telemetry.acme.example", 1500);
        let (a, b) = hello.split_at(1000);
        let first =
            protect_client_initial(VERSION_1, &[1; 8], &[9; 4], 0, &crypto_frame(0, a), 1200)
                .unwrap();
        let second =
            protect_client_initial(VERSION_1, &[2; 12], &[9; 4], 1, &crypto_frame(1000, b), 0)
                .unwrap();
        let mut second_datagram = second;
        second_datagram.extend_from_slice(&zero_rtt(300));
        second_datagram.resize(second_datagram.len().max(1200), 0);
        let mut early = zero_rtt(1200);
        early.truncate(1250);
        let hosts = Hosts::new("192.0.2.10", 50_001, "198.51.100.20", 443);
        let frames = vec![
            hosts.udp(true, &first),
            hosts.udp(true, &early),
            hosts.udp(true, &second_datagram),
        ];
        let engine = engine();
        let (verdicts, events) = run(&engine, &frames);
        assert_eq!(verdicts[0].flow, FlowStatus::Pending);
        assert_eq!(verdicts[2].action, PacketAction::Drop);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name.as_deref(), Some("x.telemetry.acme.example"));
        assert_eq!(engine.counters.bypass_of(Bypass::QuicUnreadable), 0);
    }
}

const PROFILE_RULES: &str = r#"
vendor: acme
rules:
  - id: acme-collector
    action: drop
    domains: ["*.events.acme.example"]
  - id: acme-defender-events
    action: allow
    profile: acme-defender
    domains: [edr.events.acme.example]
"#;

/// Clients 10.1.0.0/16 run the EDR (profile on), 10.2.0.0/16 is a pilot in dry run.
fn grouped_engine() -> Engine {
    let files = load_sources(vec![Source {
        name: "acme.yaml".into(),
        text: PROFILE_RULES.into(),
    }])
    .unwrap();
    let group =
        |name: &str, prefix: &str, profiles: &[&str], enforce| crate::clients::ClientGroup {
            name: name.into(),
            prefixes: vec![prefix.parse().unwrap()],
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
            enforce,
        };
    let clients = crate::clients::ClientGroups::new(
        Vec::new(),
        vec![
            group("edr-servers", "10.1.0.0/16", &["acme-defender"], None),
            group("pilot", "10.2.0.0/16", &[], Some(false)),
        ],
    )
    .unwrap();
    Engine::with_clients(
        Arc::new(RuleSet::compile(&files).unwrap()),
        EngineConfig::default(),
        clients,
    )
}

fn hello_from(engine: &Engine, client: &str, name: &str) -> (PacketAction, FlowEvent) {
    let hosts = Hosts::new(client, 40000, "198.51.100.20", 443);
    let (verdicts, events) = run(engine, &tls_flow(&hosts, &client_hello(name), 0));
    assert_eq!(events.len(), 1, "{events:?}");
    (verdicts[3].action, events[0].clone())
}

#[test]
fn a_profile_reopens_its_names_only_for_the_groups_that_turn_it_on() {
    let engine = grouped_engine();
    let (action, event) = hello_from(&engine, "10.1.0.5", "edr.events.acme.example");
    assert_eq!(action, PacketAction::Accept);
    assert_eq!(&*event.rule, "acme-defender-events");
    assert_eq!(event.profile.as_deref(), Some("acme-defender"));
    assert_eq!(&*event.group, "edr-servers");
    // The same host from a client of no group: the profile is off, the catch-all blocks.
    let (action, event) = hello_from(&engine, "192.0.2.10", "edr.events.acme.example");
    assert_eq!(action, PacketAction::Drop);
    assert_eq!(&*event.rule, "acme-collector");
    assert_eq!((&*event.group, event.profile), ("default", None));
    // The profile re-opens its own name only, not the rest of the suffix.
    let (action, _) = hello_from(&engine, "10.1.0.5", "v10.events.acme.example");
    assert_eq!(action, PacketAction::Drop);
}

#[test]
fn a_group_in_dry_run_logs_what_the_others_block_and_is_counted_apart() {
    let engine = grouped_engine();
    let (action, event) = hello_from(&engine, "10.2.9.9", "v10.events.acme.example");
    assert_eq!(action, PacketAction::Accept);
    assert_eq!((event.action, event.applied), (Action::Drop, Action::Log));
    assert_eq!(&*event.group, "pilot");
    hello_from(&engine, "192.0.2.10", "v10.events.acme.example");
    let counts: Vec<(String, String, u64)> = engine
        .flow_counts
        .snapshot()
        .into_iter()
        .filter(|(series, count)| &*series.rule == "acme-collector" && *count > 0)
        .map(|(series, count)| (series.group.to_string(), series.action.to_string(), count))
        .collect();
    assert_eq!(
        counts,
        [
            ("default".to_string(), "drop".to_string(), 1),
            ("pilot".to_string(), "log".to_string(), 1)
        ]
    );
}
