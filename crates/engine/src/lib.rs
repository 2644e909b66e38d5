//! telestrip-engine: the per-packet decision. [`flow`] keeps bounded per-flow state,
//! [`rules`] loads and compiles the rule files, [`engine`] judges each packet, [`stats`]
//! counts what it did.
//!
//! ```text
//!  telestrip (cli, report, demo)
//!      └─► telestrip-gateway (sources, daemon, metrics, server, audit)
//!            └─► telestrip-engine (flow, rules, engine: no I/O, no clock)   ◄── this crate
//!                  └─► telestrip-wire (wire, inspect: no state)
//!  telestrip-testkit (builders, traffic, fuzz bodies): dev-dependency only
//! ```
//!
//! No I/O besides reading rule files, and no clock: time comes from the caller. Never
//! panics on any input (the crate's lints deny indexing, unwrap, expect and panic outside
//! tests). `wire` and `inspect` are re-exported so that paths read as the pipeline does.

pub use telestrip_wire::{inspect, wire};

pub mod clients;
pub mod engine;
pub mod flow;
pub mod rules;
pub mod stats;

pub use engine::{Engine, EngineConfig, FlowEvent, PacketAction, Verdict, Worker};
pub use rules::RuleSet;
