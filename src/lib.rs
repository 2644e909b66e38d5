//! telestrip: a telemetry-stripping network filter for Linux gateways.
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
//! `wire`, `flow`, `inspect`, `rules` and `engine` do no I/O and never panic on input;
//! `source`, `daemon`, `output`, `cli`, `demo` and `lab` are the edges.

pub mod audit;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod flow;
pub mod fuzzing;
pub mod html;
pub mod inspect;
pub mod lab;
pub mod metrics;
pub mod output;
pub mod report;
pub mod rules;
pub mod server;
pub mod source;
pub mod stats;
pub mod testkit;
pub mod wire;

pub use engine::{Engine, EngineConfig, FlowEvent, PacketAction, Verdict, Worker};
pub use rules::RuleSet;
