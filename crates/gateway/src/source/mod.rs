//! Sources: loops that read packets from somewhere and feed them to the engine: NFQUEUE
//! (inline), AF_PACKET (passive), pcap files (offline), and the packets the sources send
//! themselves ([`inject`]). [`SourceStats`] counts what the live sources did.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::{Family, MetricSink};
use nfqueue::KernelQueue;

pub mod inject;
pub mod nfqueue;
pub mod passive;
pub mod pcap;

/// Counters of the live sources' packet threads (NFQUEUE and passive) and of the hand-over of
/// matched-flow events to the log writer.
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
    /// TCP resets sent: in passive mode, and inline to the client of a rejected DNS answer
    /// over TCP.
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

const QUEUE_PACKETS: Family = Family {
    name: "telestrip_nfqueue_packets_total",
    help: "Packets received from NFQUEUE.",
    labels: &[],
};
const QUEUE_BATCHES: Family = Family {
    name: "telestrip_nfqueue_verdict_batches_total",
    help: "System calls that sent verdicts back to NFQUEUE (packets / batches is the mean batch size).",
    labels: &[],
};
const QUEUE_ERRORS: Family = Family {
    name: "telestrip_nfqueue_errors_total",
    help: "Errors receiving packets or sending verdicts.",
    labels: &[],
};
const KERNEL_DROPPED: Family = Family {
    name: "telestrip_nfqueue_kernel_dropped_total",
    help: "Packets the kernel could not queue to telestrip (the fail mode applied), by queue and reason.",
    labels: &["queue", "reason"],
};
const UNDELIVERED: Family = Family {
    name: "telestrip_nfqueue_undelivered_packets_total",
    help: "Packets the kernel queued but could not hand to telestrip (socket buffer full), by queue, counted when the next packet arrives: with fail-open they passed unjudged, with fail-closed they were dropped.",
    labels: &["queue"],
};
const WAITING: Family = Family {
    name: "telestrip_nfqueue_waiting_packets",
    help: "Packets waiting in the kernel for a verdict, by queue.",
    labels: &["queue"],
};
const INJECTED: Family = Family {
    name: "telestrip_injected_packets_total",
    help: "Packets telestrip sent itself: NXDOMAIN answers for rejected DNS queries and in place of rejected (CNAME-cloaked) answers over UDP, TCP resets in passive mode and to the client of a rejected answer over TCP.",
    labels: &["kind"],
};
const EVENTS: Family = Family {
    name: "telestrip_match_events_total",
    help: "Matched-flow events for the log writer: handed over, or dropped because the writer fell behind.",
    labels: &["result"],
};

impl SourceStats {
    /// Reports the sources' counters to `sink`, with what the kernel says of the bound
    /// queues in `kernel` (a series per bound queue from the start: zero is evidence too).
    pub fn export_metrics(&self, kernel: &[KernelQueue], sink: &mut dyn MetricSink) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        sink.counter(&QUEUE_PACKETS, &[], load(&self.packets));
        sink.counter(&QUEUE_BATCHES, &[], load(&self.batches));
        sink.counter(&QUEUE_ERRORS, &[], load(&self.errors));
        sink.counter(&INJECTED, &["nxdomain"], load(&self.nxdomain_sent));
        sink.counter(&INJECTED, &["tcp_reset"], load(&self.resets_sent));
        sink.counter(&EVENTS, &["sent"], load(&self.events_sent));
        sink.counter(&EVENTS, &["dropped"], load(&self.events_dropped));
        let undelivered = self.undelivered();
        for queue in kernel {
            let number = queue.queue.to_string();
            let lost = undelivered
                .iter()
                .find(|(q, _)| *q == queue.queue)
                .map_or(0, |(_, n)| *n);
            sink.counter(&UNDELIVERED, &[&number], lost);
            sink.counter(
                &KERNEL_DROPPED,
                &[&number, "queue_full"],
                queue.queue_dropped,
            );
            sink.counter(
                &KERNEL_DROPPED,
                &[&number, "socket_full"],
                queue.user_dropped,
            );
            sink.gauge(&WAITING, &[&number], queue.waiting);
        }
    }
}
