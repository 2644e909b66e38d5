//! The steady-state hot path does not allocate: a worker answering packets of flows it has
//! already decided, and the inspect parsers on the messages they read (with their scratch
//! buffers warmed up). Every allocation of this test binary is counted (`stats_alloc`), so
//! the whole check is one test: the harness runs tests on parallel threads, and another
//! test's allocations would land in the same count.

use std::alloc::System;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use telestrip::inspect::{dns, http, quic, tls};
use telestrip::rules::load_rules;
use telestrip::wire::{self, LinkType};
use telestrip::{Engine, EngineConfig};
use telestrip_testkit::{client_hello, dns_query, quic_first_flight, Hosts, ACK, SYN};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations (and reallocations) made while `work` ran.
fn allocations(work: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    work();
    let change = region.change();
    change.allocations + change.reallocations
}

#[test]
fn known_flows_and_the_inspect_parsers_do_not_allocate() {
    let counted = allocations(|| drop(std::hint::black_box(vec![0u8; 64])));
    assert_eq!(
        counted, 1,
        "the allocator counts what this thread allocates"
    );
    // Known flows: 100 TLS flows (one in ten to a telemetry name), decided by their
    // ClientHello; then their data packets, round robin, as a gateway sees them after the
    // verdict (the kernel's fast path aside) and as an offline audit reads them.
    let (_, rules) = load_rules(None).unwrap();
    let engine = Engine::new(rules, EngineConfig::default());
    let mut worker = engine.worker();
    let mut events = Vec::with_capacity(1024);
    let flows: Vec<Hosts> = (0..100u16)
        .map(|i| Hosts::new("192.0.2.10", 20_000 + i, "198.51.100.20", 443))
        .collect();
    for (i, hosts) in flows.iter().enumerate() {
        let name = if i % 10 == 0 {
            "v10.events.data.microsoft.com".to_string()
        } else {
            format!("www{i}.example.org")
        };
        for frame in [
            hosts.tcp(true, 1000, SYN, &[]),
            hosts.tcp(true, 1001, ACK, &client_hello(&name)),
        ] {
            worker.process(LinkType::Ethernet, &frame, Duration::ZERO, &mut events);
        }
    }
    assert_eq!(events.len(), 10, "the telemetry flows matched");
    let data: Vec<Vec<u8>> = flows
        .iter()
        .flat_map(|h| {
            [
                h.tcp(true, 5_000, ACK, &[7; 1400]),
                h.tcp(false, 9_000, ACK, &[8; 1400]),
            ]
        })
        .collect();
    let mut judge_all = |time: Duration| {
        for frame in &data {
            worker.process(LinkType::Ethernet, frame, time, &mut events);
        }
    };
    // The first round may fill per-thread caches; the rounds after it must not allocate.
    judge_all(Duration::from_millis(10));
    let known = allocations(|| {
        for round in 0..20 {
            judge_all(Duration::from_millis(20 + round));
        }
    });
    assert_eq!(
        known,
        0,
        "allocations for {} known-flow packets",
        20 * data.len()
    );

    // The parsers, on what they read in the traffic above and in DNS and QUIC.
    let hello_frame = flows[1].tcp(true, 1001, ACK, &client_hello("www.example.org"));
    let hello = wire::parse(LinkType::Ethernet, &hello_frame)
        .unwrap()
        .payload
        .to_vec();
    let request = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: t\r\n\r\n".to_vec();
    let query = dns_query(7, "v10.events.data.microsoft.com", 1);
    let initials = quic_first_flight(
        quic::VERSION_1,
        &telestrip_testkit::handshake_client_hello("www.example.org", 0),
        1000,
        1,
        &[],
    );
    let mut scratch = Vec::with_capacity(64 * 1024);
    let mut initial_scratch = quic::InitialScratch::default();
    let mut parse_all = |scratch: &mut Vec<u8>| {
        assert!(wire::parse(LinkType::Ethernet, &hello_frame).is_ok());
        assert!(tls::scan_client_hello(&hello, scratch).is_ok());
        assert!(http::scan_request(&request).is_ok());
        assert!(dns::Message::parse(&query).is_ok());
        let mut crypto_bytes = 0;
        for datagram in &initials {
            let read = quic::read_client_initials(datagram, &mut initial_scratch, |_, bytes| {
                crypto_bytes += bytes.len();
            });
            assert!(read.is_ok());
        }
        assert!(crypto_bytes > 0);
    };
    parse_all(&mut scratch);
    let parsers = allocations(|| {
        for _ in 0..100 {
            parse_all(&mut scratch);
        }
    });
    assert_eq!(parsers, 0, "allocations for 100 rounds of the parsers");
}
