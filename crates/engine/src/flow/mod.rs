//! Flow: the bidirectional flow key, per-flow state with its cached verdict, the bounded
//! reassembly of a client's first flight, and the flow table with a hard cap and idle expiry.
//!
//! Takes parsed packets' addresses and ports; holds only bounded state: at most
//! `max_flows` flows and [`stream::MAX_STREAM_BYTES`] buffered bytes per direction of a
//! flow, each cap counted when hit. No clock: time comes from the caller.

pub mod cache;
pub mod defrag;
pub mod ech;
pub mod key;
pub mod learned;
pub mod shared;
pub mod stream;
pub mod table;

pub use cache::{Cached, VerdictCache};
pub use defrag::{Defrag, Reassembly};
pub use ech::EchConfigs;
pub use key::FlowKey;
pub use learned::LearnedNames;
pub use shared::SharedFact;
pub use stream::{Insert, StreamBuf};
pub use table::{FlowState, FlowTable, Phase, Streams, SynShape};

/// What to do with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketAction {
    Accept,
    /// Discard silently.
    Drop,
    /// Discard and answer the client (RST, ICMP unreachable, or NXDOMAIN for DNS).
    Reject,
}

impl PacketAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PacketAction::Accept => "accept",
            PacketAction::Drop => "drop",
            PacketAction::Reject => "reject",
        }
    }
}
