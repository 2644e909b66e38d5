//! telestrip: a telemetry-stripping network filter for Linux gateways.
//!
//! The pipeline is a stack of crates; each depends only on the ones below it, so a
//! wrong-way import does not compile:
//!
//! ```text
//!  telestrip            cli, report, demo, lab: the commands                ◄── this crate
//!      └─► telestrip-gateway   sources (NFQUEUE, passive, pcap), daemon, config,
//!            │                 metrics, control-plane server, audit log
//!            └─► telestrip-engine    flow, rules, engine: no I/O, no clock
//!                  └─► telestrip-wire      wire, inspect: no state
//!  telestrip-testkit    packet builders, traffic generator, fuzz bodies: a dev-dependency,
//!                       never linked into the released binary
//! ```
//!
//! How a packet flows through the modules:
//!
//! ```text
//!  source::nfqueue (inline) ─┐
//!  source::passive (capture) ├─frame─► engine::Worker::process ──► Verdict (accept/drop/reject)
//!  source::pcap (files)     ─┘           │                         + FlowEvent when a rule matched
//!                                        ├─ wire     frame → Packet (addresses, ports, payload)
//!                                        ├─ flow     FlowKey → FlowState (cached verdict, streams)
//!                                        ├─ inspect  first flight → name (TLS SNI, HTTP Host, DNS)
//!                                        └─ rules    name / address → Hit (rule, vendor, action)
//! ```
//!
//! The lower crates' modules are re-exported here, so `telestrip::engine` and
//! `telestrip::wire` name the same items as `telestrip_engine::engine` and
//! `telestrip_wire::wire`.

pub use telestrip_gateway::{
    audit, clients, config, conntrack, daemon, engine, flow, html, inspect, metrics, output, pair,
    rulepack, rules, server, shared, source, stats, wire,
};

pub mod cli;
pub mod demo;
pub mod lab;
pub mod report;

pub use engine::{Engine, EngineConfig, FlowEvent, PacketAction, Verdict, Worker};
pub use rules::RuleSet;
