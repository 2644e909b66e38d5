//! The verdict cache's fast path (`Worker::process` answers a packet of a decided flow
//! after only peeking at its frame) judges and counts every packet as the full parse does,
//! on the benchmark traffic mix.

use std::sync::Arc;
use std::time::Duration;

use telestrip::engine::{Engine, EngineConfig, Routed};
use telestrip::rules::{bundled_sources, load_sources, RuleSet};
use telestrip::wire::{self, LinkType};
use telestrip_testkit::traffic::{generate, telemetry_names, MixOptions};
use telestrip_testkit::{
    client_hello, handshake_client_hello, quic_initial_to, tls_flow, Hosts, ACK,
};

/// Counters as the metrics endpoint would show them, to compare two engines.
#[derive(Default)]
struct Readings(Vec<(&'static str, Vec<String>, u64)>);

impl telestrip::stats::MetricSink for Readings {
    fn counter(&mut self, family: &'static telestrip::stats::Family, labels: &[&str], value: u64) {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        self.0.push((family.name, labels, value));
    }
    fn gauge(&mut self, family: &'static telestrip::stats::Family, labels: &[&str], value: u64) {
        self.counter(family, labels, value);
    }
}

#[test]
fn answers_from_the_cache_after_a_peek_are_those_of_the_full_parse() {
    let files = load_sources(bundled_sources()).unwrap();
    let set = RuleSet::compile(&files).unwrap();
    let names = telemetry_names(&files, &set);
    let options = MixOptions {
        packets: 30_000,
        // Slow enough that flows outlive a second of packet time (the cache's lifetime).
        packets_per_second: 5_000,
        telemetry_percent: 20,
        ..MixOptions::default()
    };
    let mut frames = Vec::new();
    generate(&options, &names, |time, frame| {
        frames.push((time, frame.to_vec()));
        Ok(())
    })
    .unwrap();
    // Within one second, so that the cache holds the first verdicts: a client reuses its
    // port for a telemetry connection (its bare SYN must not be answered from the cache),
    // and a QUIC client sends a second Initial with a telemetry name on an allowed flow.
    let telemetry = "v10.events.data.microsoft.com";
    let tcp = Hosts::new("10.9.0.1", 41000, "198.51.100.77", 443);
    let udp = Hosts::new("10.9.0.2", 41001, "198.51.100.78", 443);
    let mut extra = tls_flow(&tcp, &client_hello("www.example.org"), 0);
    extra.push(tcp.tcp(false, 9, ACK, &[0; 100]));
    extra.extend(tls_flow(&tcp, &client_hello(telemetry), 0));
    for (dcid, name) in [([1; 8], "www.example.org"), ([2; 8], telemetry)] {
        extra.push(udp.udp(
            true,
            &quic_initial_to(&dcid, &handshake_client_hello(name, 0)),
        ));
        extra.push(udp.udp(false, &[0x40; 100]));
    }
    let end = frames.last().unwrap().0;
    frames.extend(
        (1..)
            .zip(extra)
            .map(|(ms, frame)| (end + Duration::from_millis(ms), frame)),
    );
    let peekable = frames
        .iter()
        .filter(|(_, frame)| wire::peek(LinkType::Ethernet, frame).is_some())
        .count();
    assert!(
        peekable * 10 > frames.len() * 9,
        "{peekable} of {}",
        frames.len()
    );
    // One engine as every source runs it; the other judges every frame peek reads through
    // the full parse (the routed path, which never peeks), everything else as the first.
    let set = Arc::new(set);
    let engines =
        [0, 1].map(|_| Engine::with_shared_rules(Arc::clone(&set), EngineConfig::default()));
    let mut workers = engines.each_ref().map(Engine::worker);
    let mut events = [Vec::new(), Vec::new()];
    let [fast, full] = &mut workers;
    let [fast_events, full_events] = &mut events;
    for (time, frame) in &frames {
        let fast_verdict = fast.process(LinkType::Ethernet, frame, *time, fast_events);
        let full_verdict = match wire::peek(LinkType::Ethernet, frame) {
            Some(_) => {
                let layout = wire::parse(LinkType::Ethernet, frame)
                    .unwrap()
                    .layout(frame)
                    .unwrap();
                full.process_routed(Routed::Frame(frame, &layout), *time, full_events)
            }
            None => full.process(LinkType::Ethernet, frame, *time, full_events),
        };
        assert_eq!(fast_verdict, full_verdict, "at {time:?}");
    }
    assert_eq!(fast_events, full_events);
    // Both telemetry connections after an allowed one were found.
    let late: Vec<_> = fast_events
        .iter()
        .filter(|event| event.name.as_deref() == Some(telemetry))
        .filter(|event| event.client.to_string().starts_with("10.9.0."))
        .collect();
    assert_eq!(late.len(), 2, "{late:?}");
    let [fast_counters, full_counters] = engines.each_ref().map(|engine| {
        let mut readings = Readings::default();
        engine.counters.export_metrics(&mut readings);
        readings.0
    });
    assert_eq!(fast_counters, full_counters);
}
