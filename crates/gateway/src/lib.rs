//! telestrip-gateway: everything around the engine that touches the outside world. Packet
//! [`source`]s (NFQUEUE with the vendored `nfq`, passive capture, pcap files), the
//! [`daemon`] with its [`config`], the [`metrics`] and the control-plane [`server`], and the
//! hash-chained [`audit`] log.
//!
//! ```text
//!  telestrip (cli, report, demo)
//!      └─► telestrip-gateway (sources, daemon, metrics, server, audit)   ◄── this crate
//!            └─► telestrip-engine (flow, rules, engine: no I/O, no clock)
//!                  └─► telestrip-wire (wire, inspect: no state)
//!  telestrip-testkit (builders, traffic, fuzz bodies): dev-dependency only
//! ```

pub use telestrip_engine::{clients, engine, flow, inspect, rules, stats, wire};

pub mod audit;
pub mod config;
pub mod conntrack;
pub mod daemon;
pub mod html;
pub mod journal;
pub mod metrics;
pub mod output;
pub mod pair;
pub mod rulepack;
pub mod server;
pub mod shared;
pub mod source;
