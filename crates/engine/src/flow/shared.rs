//! [`SharedFact`]: what one gateway learned from a DNS answer that the other gateways of its
//! site need too (a learned telemetry address, an announced ECH configuration): after a
//! failover the clients keep using answers the new gateway never saw, for as long as their
//! TTL. The engine hands facts to an outbox (a bounded channel the gateway's sharing thread
//! drains, [`crate::engine::Engine::share_facts`]) and takes facts from peers through
//! [`crate::engine::Engine::import`]; imported facts are never shared again.

use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedFact {
    /// `addr` serves `name`, a name a blocking rule matched, until `expires` (Unix seconds).
    Address {
        addr: IpAddr,
        name: Box<str>,
        expires: u64,
    },
    /// The DNS announced ECH configuration `config_id` for `public_name` until `expires`.
    EchConfig {
        public_name: Box<str>,
        config_id: u8,
        expires: u64,
    },
}

impl SharedFact {
    pub fn expires(&self) -> u64 {
        match self {
            Self::Address { expires, .. } | Self::EchConfig { expires, .. } => *expires,
        }
    }
}
