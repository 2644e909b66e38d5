//! telestrip-wire: the stateless bottom of the pipeline. [`wire`] turns one captured frame
//! into a borrowed packet view; [`inspect`] turns the bytes of a first flight into a name
//! (DNS, TLS and QUIC ClientHello, HTTP Host).
//!
//! ```text
//!  telestrip (cli, report, demo)
//!      └─► telestrip-gateway (sources, daemon, metrics, server, audit)
//!            └─► telestrip-engine (flow, rules, engine: no I/O, no clock)
//!                  └─► telestrip-wire (wire, inspect: no state)   ◄── this crate
//!  telestrip-testkit (builders, traffic, fuzz bodies): dev-dependency only
//! ```
//!
//! No state, no I/O, no clock; never panics on any input (the crate's lints deny indexing,
//! unwrap, expect and panic outside tests).

pub mod inspect;
pub mod wire;
