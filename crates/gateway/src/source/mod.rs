//! Sources: loops that read packets from somewhere and feed them to the engine: NFQUEUE
//! (inline), AF_PACKET (passive), pcap files (offline), and the packets the sources send
//! themselves ([`inject`]). [`SourceStats`] counts what the live sources did.

use std::sync::atomic::AtomicU64;

pub mod inject;
pub mod nfqueue;
pub mod passive;
pub mod pcap;

/// Counters of one or more queue threads.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Packets received from the kernel.
    pub packets: AtomicU64,
    /// Verdict system calls (each sends the verdicts of a batch of packets).
    pub batches: AtomicU64,
    /// Packets re-injected with a flow's final verdict mark (normally one per flow; more when
    /// packets of the flow were already queued when the verdict fell).
    pub marked: AtomicU64,
    /// Matched-flow events dropped because the log channel was full.
    pub events_dropped: AtomicU64,
    /// Errors receiving or sending verdicts, or injecting answers.
    pub errors: AtomicU64,
    /// NXDOMAIN answers sent for rejected DNS queries.
    pub nxdomain_sent: AtomicU64,
    /// DNS answers over UDP with an `ech` parameter passed on without it (`strip_ech` on).
    pub ech_stripped: AtomicU64,
    /// DNS answers over TCP whose `ech` parameters were hidden under a private-use key
    /// (the message keeps its length, so the stream stays intact).
    pub ech_hidden: AtomicU64,
    /// DNS answers with an `ech` parameter passed on unchanged with `strip_ech` on: IP
    /// fragments, offloaded (GSO) segments, messages that cannot be rewritten safely.
    /// Counted where the packet holds the whole answer: a DNS-over-TCP message spread over
    /// several segments, or not the first in its segment, passes uncounted.
    pub ech_kept: AtomicU64,
    /// TCP resets sent in passive mode.
    pub resets_sent: AtomicU64,
    /// Matched-flow events handed to the log writer, and written by it.
    pub events_sent: AtomicU64,
    pub events_written: AtomicU64,
    /// Per queue: packets the kernel numbered for telestrip but never handed over (its
    /// socket buffer was full), seen as gaps in the packet ids. With fail-open they passed
    /// unjudged, with fail-closed they were dropped; the kernel counts neither of the
    /// fail-open ones anywhere.
    pub undelivered: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl SourceStats {
    /// Undelivered packets per queue (see [`SourceStats::undelivered`]).
    pub fn undelivered(&self) -> Vec<(u16, u64)> {
        let map = self
            .undelivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(q, n)| (*q, *n)).collect()
    }

    pub(crate) fn note_undelivered(&self, queue: u16, packets: u64) {
        let mut map = self
            .undelivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(queue).or_default() += packets;
    }
}
