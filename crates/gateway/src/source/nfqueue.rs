//! Inline source: packets from NFQUEUE (`nfq` crate), verdicts back to the kernel.
//!
//! Every packet of an undecided flow comes up; the verdict goes back with a mark. For a flow
//! whose verdict is final the packet is re-injected (`NF_REPEAT`) with the accept, drop or
//! reject mark, and the firewall rules in `deploy/` copy that mark onto the connection and act
//! on it, so the rest of the flow never leaves the kernel. Pending packets are accepted as
//! they are. DNS is judged per message and never marked.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nfq::{Message, Queue, Verdict as NfVerdict};
use prometheus::Histogram;

use crate::config::{FailMode, Marks};
use crate::conntrack::{Announcer, FlowTuple, MarkUpdate};
use crate::engine::{Engine, FlowEvent, FlowStatus, PacketAction, Queued, Reply};
use crate::source::inject::Injector;
use crate::source::SourceStats;
use crate::stats::bump;

/// Fault injection for the watchdog test (`tests/inline_nfqueue.rs`): with the
/// `fault-injection` feature, `TELESTRIP_FAULT_STALL_AFTER_PACKETS=N` makes a queue thread
/// stop handling packets after N. Without the feature (every released binary) the hook
/// does not exist and the variable is never read.
#[cfg(feature = "fault-injection")]
mod fault {
    pub(super) fn stall_after() -> Option<u64> {
        std::env::var("TELESTRIP_FAULT_STALL_AFTER_PACKETS")
            .ok()
            .and_then(|v| v.parse().ok())
    }

    pub(super) fn maybe_stall(stall_after: Option<u64>, packets: u64) {
        if stall_after.is_some_and(|n| packets > n) {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
mod fault {
    pub(super) fn stall_after() -> Option<u64> {
        None
    }

    #[inline(always)]
    pub(super) fn maybe_stall(_: Option<u64>, _: u64) {}
}

/// One line of /proc/net/netfilter/nfnetlink_queue: what the kernel knows of a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelQueue {
    pub queue: u16,
    /// Packets waiting for a verdict.
    pub waiting: u64,
    /// Packets dropped because the queue was full.
    pub queue_dropped: u64,
    /// Packets dropped because the netlink socket buffer was full.
    pub user_dropped: u64,
}

const PROC_QUEUES: &str = "/proc/net/netfilter/nfnetlink_queue";

/// The queue statistics file, opened before privileges are dropped: it is readable by root
/// only, and a /proc file opened once can be read again from the start.
static PROC_QUEUES_FILE: std::sync::OnceLock<std::sync::Mutex<std::fs::File>> =
    std::sync::OnceLock::new();

/// Opens the kernel's queue statistics for later reads (call while still privileged).
pub fn open_kernel_queues() -> std::io::Result<()> {
    let file = std::fs::File::open(PROC_QUEUES)?;
    let _ = PROC_QUEUES_FILE.set(std::sync::Mutex::new(file));
    Ok(())
}

fn read_kernel_queues() -> String {
    use std::io::{Read, Seek};
    let Some(file) = PROC_QUEUES_FILE.get() else {
        return std::fs::read_to_string(PROC_QUEUES).unwrap_or_default();
    };
    let mut file = file
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut text = String::new();
    if file.rewind().is_ok() {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// The kernel's view of every bound queue in this network namespace.
pub fn kernel_queues() -> Vec<KernelQueue> {
    parse_kernel_queues(&read_kernel_queues())
}

/// The queues of a `/proc/net/netfilter/nfnetlink_queue` text (read in any namespace).
pub fn parse_kernel_queues(text: &str) -> Vec<KernelQueue> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            Some(KernelQueue {
                queue: u16::try_from(*fields.first()?).ok()?,
                waiting: *fields.get(2)?,
                queue_dropped: *fields.get(5)?,
                user_dropped: *fields.get(6)?,
            })
        })
        .collect()
}

/// Settings of one queue thread.
pub struct QueueSettings {
    pub queue: u16,
    pub marks: Marks,
    pub fail: FailMode,
    pub max_length: u32,
    /// How long to keep polling for the next packet before sleeping (zero: not at all).
    pub busy_poll: Duration,
    /// Where block verdicts go to reach the connection table through ctnetlink (a gateway
    /// pair: `pair.announce_verdicts`).
    pub announce: Option<Announcer>,
}

/// Packets judged before their verdicts go back together in one system call.
const VERDICT_BATCH: usize = 64;

/// Socket buffer for a queue of `max_length` packets: about 2 KiB of buffer per queued
/// packet (a small packet with its netlink metadata; GSO packets take more), at least
/// 1 MiB and at most 128 MiB.
fn socket_buffer_bytes(max_length: u32) -> usize {
    (max_length as usize * 2048).clamp(1 << 20, 128 << 20)
}

/// Opens and binds an NFQUEUE queue (needs CAP_NET_ADMIN).
pub fn open(settings: &QueueSettings) -> std::io::Result<Queue> {
    let mut queue = Queue::open()?;
    queue.bind(settings.queue)?;
    queue.set_queue_max_len(settings.queue, settings.max_length)?;
    // With fail-open the kernel accepts packets when the queue is full instead of dropping.
    queue.set_fail_open(settings.queue, settings.fail == FailMode::Open)?;
    // Large GSO packets come up whole; telestrip only reads headers and first flights.
    queue.set_recv_gso(settings.queue, true)?;
    // Room for the whole queue in the socket: packets that do not fit there would be
    // dropped, or with fail-open passed unseen, and counted nowhere.
    queue.set_recv_buffer_size(socket_buffer_bytes(settings.max_length))?;
    Ok(queue)
}

/// Opens the raw socket for forged DNS answers (needs CAP_NET_RAW, so before privileges are
/// dropped). Without it rejected DNS queries get the firewall's ICMP error instead.
pub fn open_injector() -> Option<Injector> {
    match Injector::open() {
        Ok(injector) => Some(injector),
        Err(error) => {
            crate::log_line!(Warning, "telestrip: cannot send NXDOMAIN answers ({error}); rejected DNS queries get ICMP unreachable");
            None
        }
    }
}

/// Runs one queue until `stop` is set (checked between batches).
///
/// Packets are taken in batches: after a blocking receive, whatever else the kernel has
/// queued (up to [`VERDICT_BATCH`]) is taken without waiting, every packet is judged, and
/// all verdicts go back in one system call (`Queue::verdict_batch`). Under light load a
/// batch is one packet, so nothing waits for a batch to fill. With `busy_poll` set the
/// thread keeps polling that long for more packets before it sleeps again.
#[allow(clippy::too_many_arguments)]
pub fn run(
    engine: &Engine,
    mut queue: Queue,
    mut injector: Option<Injector>,
    settings: &QueueSettings,
    events_out: &SyncSender<FlowEvent>,
    stats: &SourceStats,
    stop: &AtomicBool,
    latency: &Histogram,
) {
    let mut worker = engine.worker();
    let mut events = Vec::new();
    let mut batch: Vec<Message> = Vec::with_capacity(VERDICT_BATCH);
    let mut received: Vec<Instant> = Vec::with_capacity(VERDICT_BATCH);
    let stall_after = fault::stall_after();
    let mut polling_until: Option<Instant> = None;
    // The kernel numbers a queue's packets one by one; a skipped number is a packet that
    // did not fit in the socket buffer.
    let mut next_id: Option<u32> = None;
    while !stop.load(Ordering::Relaxed) {
        // The first packet: wait for it (or poll for it while the busy-poll time lasts).
        queue.set_nonblocking(polling_until.is_some());
        let first = match queue.recv() {
            Ok(message) => message,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                match polling_until {
                    Some(until) if Instant::now() < until => std::hint::spin_loop(),
                    _ => polling_until = None,
                }
                continue;
            }
            Err(_) => {
                bump(&stats.errors);
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        received.push(Instant::now());
        batch.push(first);
        // Whatever else is queued already, without waiting.
        queue.set_nonblocking(true);
        while batch.len() < VERDICT_BATCH {
            match queue.recv() {
                Ok(message) => {
                    received.push(Instant::now());
                    batch.push(message);
                }
                Err(error) => {
                    if error.kind() != std::io::ErrorKind::WouldBlock {
                        bump(&stats.errors);
                    }
                    break;
                }
            }
        }
        worker.refresh_rules();
        for message in &mut batch {
            let id = message.get_packet_id();
            if let Some(expected) = next_id {
                let skipped = id.wrapping_sub(expected);
                // A difference this large is no loss but the numbering starting over.
                if skipped > 0 && skipped < 1 << 30 {
                    stats.note_undelivered(settings.queue, u64::from(skipped));
                }
            }
            next_id = Some(id.wrapping_add(1));
            bump(&stats.packets);
            fault::maybe_stall(stall_after, stats.packets.load(Ordering::Relaxed));
            judge(
                &mut worker,
                message,
                injector.as_mut(),
                settings,
                stats,
                &mut events,
            );
        }
        bump(&stats.batches);
        if queue.verdict_batch(&mut batch).is_err() {
            bump(&stats.errors);
        }
        let answered = Instant::now();
        for at in received.drain(..) {
            latency.observe(answered.duration_since(at).as_secs_f64());
        }
        forward_events(&mut events, events_out, stats);
        if !settings.busy_poll.is_zero() {
            polling_until = Some(Instant::now() + settings.busy_poll);
        }
    }
}

/// Judges one packet and sets its verdict and mark, or applies the engine's reply: an
/// answer without its `ech` parameter passes in place of the packet, a rejected DNS query
/// is answered with NXDOMAIN (or, without the raw socket, rejected by the firewall), a
/// rejected answer (CNAME cloaking) is replaced by an NXDOMAIN over UDP, and over TCP
/// rejected with a reset sent to its client too.
fn judge(
    worker: &mut crate::engine::Worker<'_>,
    message: &mut Message,
    mut injector: Option<&mut Injector>,
    settings: &QueueSettings,
    stats: &SourceStats,
    events: &mut Vec<FlowEvent>,
) {
    let time = message
        .get_timestamp()
        .unwrap_or_else(SystemTime::now)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let queued = Queued {
        packet: message.get_payload(),
        checksum_ready: message.is_checksum_ready(),
        offloaded: message.is_seg_offloaded(),
    };
    let (verdict, reply) = worker.process_queued(queued, time, events);
    let code = match (verdict.flow, verdict.action) {
        (FlowStatus::Decided, PacketAction::Accept) => Some(Marks::ACCEPT),
        (FlowStatus::Decided, PacketAction::Drop) => Some(Marks::DROP),
        (FlowStatus::Decided, PacketAction::Reject) => Some(Marks::REJECT),
        // Per-message (DNS) and untracked blocks concern this packet only.
        (_, PacketAction::Drop) => Some(Marks::DROP_PACKET),
        (_, PacketAction::Reject) => Some(Marks::REJECT_PACKET),
        (_, PacketAction::Accept) => None,
    };
    match reply {
        Reply::Answer(answer)
            if inject(injector.as_deref_mut(), answer, &stats.nxdomain_sent, stats) =>
        {
            // The client got its NXDOMAIN; the query itself goes no further.
            message.set_verdict(NfVerdict::Drop);
            return;
        }
        // An answer without its `ech` parameter (accepted), or the NXDOMAIN in place of a
        // rejected answer (a cloaked name): the engine makes one only where it applies.
        Reply::Replace(packet) => {
            if verdict.action == PacketAction::Reject {
                bump(&stats.nxdomain_sent);
            }
            message.set_payload(packet.to_vec());
            message.set_verdict(NfVerdict::Accept);
            return;
        }
        // A reset for the client of a rejected answer over TCP; the answer is rejected
        // below, which resets the server.
        Reply::Also(reset) => {
            inject(injector, reset, &stats.resets_sent, stats);
        }
        _ => {}
    }
    if let Some(code) = code {
        let marks = settings.marks;
        message.set_nfmark((message.get_nfmark() & !marks.mask()) | marks.mark(code));
        message.set_verdict(NfVerdict::Repeat);
        if verdict.flow == FlowStatus::Decided {
            bump(&stats.marked);
            // An accepted packet carries its mark to conntrack confirmation, which announces
            // it; a dropped one never gets there.
            if let (Some(announcer), Marks::DROP | Marks::REJECT) = (&settings.announce, code) {
                if let Some(tuple) = FlowTuple::of_packet(message.get_payload()) {
                    announcer.announce(MarkUpdate {
                        tuple,
                        mark: marks.mark(code),
                        mask: marks.mask(),
                    });
                }
            }
        }
    } else {
        message.set_verdict(NfVerdict::Accept);
    }
}

pub(crate) fn forward_events(
    events: &mut Vec<FlowEvent>,
    out: &SyncSender<FlowEvent>,
    stats: &SourceStats,
) {
    for event in events.drain(..) {
        match out.try_send(event) {
            Ok(()) => bump(&stats.events_sent),
            Err(_) => bump(&stats.events_dropped),
        }
    }
}

/// Sends a packet the engine made (an NXDOMAIN answer, a reset) through the raw socket,
/// counting it in `sent`; false without the raw socket or when sending failed (counted as
/// an error), so the firewall rules reject the packet judged instead.
fn inject(
    injector: Option<&mut Injector>,
    packet: &[u8],
    sent: &AtomicU64,
    stats: &SourceStats,
) -> bool {
    let Some(injector) = injector else {
        return false;
    };
    match injector.send(packet) {
        Ok(()) => {
            bump(sent);
            true
        }
        Err(_) => {
            bump(&stats.errors);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_queue_table() {
        // Two queues as /proc/net/netfilter/nfnetlink_queue lists them: queue, port id,
        // waiting, copy mode, copy range, queue drops, user drops, last id, 1.
        let text = "    0  12345     3 2 65531   17   40 889 1\n    1  12346     0 2 65531    0    2 101 1\n";
        let queues = parse_kernel_queues(text);
        assert_eq!(queues.len(), 2);
        assert_eq!(
            (
                queues[0].queue,
                queues[0].waiting,
                queues[0].queue_dropped,
                queues[0].user_dropped
            ),
            (0, 3, 17, 40)
        );
        assert_eq!((queues[1].queue, queues[1].user_dropped), (1, 2));
        assert!(parse_kernel_queues("").is_empty());
        assert!(parse_kernel_queues("garbage\n").is_empty());
    }
}
