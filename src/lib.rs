//! telestrip: a telemetry-stripping network filter for Linux gateways.
//!
//! How a packet flows through the modules:
//!
//! ```text
//!  source::pcap ──frame──► engine::Worker::process ──► Verdict (accept / drop / reject)
//!                            │                          + FlowEvent when a rule matched
//!                            ├─ wire      frame → Packet (addresses, ports, payload; etherparse)
//!                            ├─ flow      FlowKey → FlowState (cached verdict, stream buffer)
//!                            ├─ inspect   first flight → name (TLS SNI, HTTP Host, DNS)
//!                            └─ rules     name / address → Hit (rule, vendor, action)
//! ```
//!
//! `wire`, `flow`, `inspect`, `rules` and `engine` do no I/O and never panic on input;
//! `source`, `output` and `cli` are the edges.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod flow;
pub mod inspect;
pub mod lab;
pub mod output;
pub mod rules;
pub mod source;
pub mod stats;
pub mod testkit;
pub mod wire;

pub use engine::{Engine, EngineConfig, FlowEvent, PacketAction, Verdict, Worker};
pub use rules::RuleSet;
