//! `telestrip pcap --threads N`: this thread reads the files, reassembles IP fragments and
//! judges DNS in capture order (`Worker::prepare`, `Worker::finish_route`), N packet threads
//! judge the other packets, each flow on one thread: plain TCP and UDP frames from what the
//! reader's peek gave (a packet of a flow in the thread's verdict cache is answered without
//! its frame being read again, else from the frame), the rest from the layout the reader
//! parsed. Every match carries its packet's index, so the list comes out in capture order;
//! idle flows are swept at the packet where one thread would sweep, once every thread has
//! caught up. The matches and counters are those of one thread.
//!
//! Memory stays bounded whatever N is: a fixed pool of batches circulates, a batch is sent
//! before its first frame falls far behind the reader, and the reader keeps mapped only the
//! pages of the file from the first frame not yet judged on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use super::{next_frame, open_capture, PcapOptions, Progress, Run};
use crate::engine::{CacheProbe, Engine, FlowEvent, Routed};

/// Frames handed to a packet thread at a time.
const BATCH: usize = 4096;
/// Batches queued per packet thread: bounds how far the reader runs ahead.
const BATCHES_QUEUED: usize = 4;
/// Batches in circulation per packet thread: the queued ones, the one the reader fills
/// and the one the thread judges. A fixed pool, so memory is bounded and reused.
const BATCHES_PER_THREAD: usize = BATCHES_QUEUED + 2;

/// Where a batched frame's bytes are.
#[derive(Clone, Copy)]
enum Bytes {
    /// In the mapped capture file.
    Mapped { start: usize, len: u32 },
    /// Copied into the batch (a capture read through a buffer).
    Owned { start: usize, len: u32 },
    /// A reassembled datagram, by its index in the batch's datagrams.
    Datagram(usize),
}

struct Item {
    index: u64,
    time: Duration,
    bytes: Bytes,
    judge: Judge,
}

/// How a packet thread judges an item. Items stay small (the reader writes a million of
/// them for a million packets): a layout is kept beside them.
enum Judge {
    /// A plain TCP or UDP frame: from the thread's verdict cache, else from the frame.
    Peeked(crate::wire::LinkType, CacheProbe),
    /// From the layout the reader parsed, by its index in the batch's layouts.
    Parsed(usize),
    /// A reassembled datagram (`Bytes::Datagram`).
    Datagram,
}

/// Frames for one packet thread, in capture order.
#[derive(Default)]
struct Batch {
    map: Option<std::sync::Arc<memmap2::Mmap>>,
    owned: Vec<u8>,
    datagrams: Vec<crate::engine::Datagram>,
    layouts: Vec<crate::wire::Layout>,
    items: Vec<Item>,
    /// Where its first frame in the mapped file is.
    first_mapped: Option<usize>,
}

/// The batches in circulation: judged ones come back to be filled again, keeping their
/// buffers' capacity.
struct Pool {
    judged: Receiver<Batch>,
    made: usize,
    limit: usize,
}

impl Pool {
    /// A batch to fill, for frames of `map`: a judged one, or a new one while the pool is
    /// not full, or else the next one a packet thread hands back (every batch not being
    /// filled is queued or being judged, so one comes back).
    fn take(&mut self, map: &Option<std::sync::Arc<memmap2::Mmap>>) -> Batch {
        let mut batch = match self.judged.try_recv() {
            Ok(batch) => batch,
            Err(_) if self.made < self.limit => {
                self.made += 1;
                Batch {
                    items: Vec::with_capacity(BATCH),
                    ..Batch::default()
                }
            }
            // An error: every packet thread has stopped, which the send that follows reports.
            Err(_) => self.judged.recv().unwrap_or_default(),
        };
        batch.map.clone_from(map);
        batch
    }
}

/// Reads the files with `options.threads` packet threads.
pub(super) fn read_files(engine: &Engine, options: &PcapOptions) -> Run {
    let started = Instant::now();
    let mut run = Run::default();
    let mut indexed: Vec<(u64, FlowEvent)> = Vec::new();
    // Batches each packet thread has judged, so the reader can wait for all of them.
    let judged: Vec<AtomicU64> = (0..options.threads).map(|_| AtomicU64::new(0)).collect();
    let offloaded = super::offloaded_sources(&options.files);
    std::thread::scope(|scope| {
        let (give_back, take_back) = std::sync::mpsc::channel::<Batch>();
        let mut lanes = Lanes::new(&judged, take_back);
        let mut threads = Vec::with_capacity(options.threads);
        for (judged, receive) in judged.iter().zip(lanes.receivers()) {
            let give_back = give_back.clone();
            let offloaded = offloaded.clone();
            threads.push(
                scope.spawn(move || judge_batches(engine, receive, &give_back, judged, offloaded)),
            );
        }
        drop(give_back);
        let mut router = engine.worker();
        router.set_sweeping(false);
        if let Some(offloaded) = &offloaded {
            router.trust_capture_checksums(std::sync::Arc::clone(offloaded));
        }
        let mut events = Vec::new();
        let mut progress = Progress::new(options.progress);
        let lane_count = options.threads;
        'files: for path in &options.files {
            let Some(mut reader) = open_capture(path, &mut run) else {
                continue;
            };
            progress.start(&reader);
            lanes.start_file(reader.mapped().cloned());
            let mut next_check = 0;
            let mut hold = None;
            loop {
                if let Some(offset) = hold.take() {
                    reader.hold_from(offset);
                }
                let Some(frame) = next_frame(&mut reader, path, &mut run) else {
                    break;
                };
                let index = run.packets;
                run.packets += 1;
                run.bytes += frame.data.len() as u64;
                if let Some(at) = frame.mapped_at.filter(|at| *at >= next_check) {
                    if !lanes.send_stale(at) {
                        run.problems.push("a packet thread stopped".to_string());
                        break 'files;
                    }
                    hold = Some(lanes.unread_from());
                    next_check = at + CHECK_EVERY;
                }
                let now = frame.time.as_secs();
                let prepared = router.prepare(frame.link, frame.data, frame.time);
                if prepared.reaches_table() && engine.flows().sweep_due(now) {
                    // Idle flows are swept when every thread has judged every packet
                    // before this one, at this packet's time: as one thread would.
                    lanes.send_all();
                    lanes.wait_until_judged();
                    engine.flows().maybe_sweep(now);
                }
                let (lane, bytes, judge) =
                    match router.finish_route(prepared, frame.data, frame.time, &mut events) {
                        crate::engine::Route::Done(_) => {
                            indexed.extend(events.drain(..).map(|e| (index, e)));
                            continue;
                        }
                        crate::engine::Route::Peeked(hash, probe) => {
                            let lane = lane_of(hash, lane_count);
                            let bytes = frame_bytes(&mut lanes.filling[lane], &frame);
                            (lane, bytes, Judge::Peeked(frame.link, probe))
                        }
                        crate::engine::Route::Frame(hash, layout) => {
                            let lane = lane_of(hash, lane_count);
                            let batch = &mut lanes.filling[lane];
                            let bytes = frame_bytes(batch, &frame);
                            batch.layouts.push(layout);
                            (lane, bytes, Judge::Parsed(batch.layouts.len() - 1))
                        }
                        crate::engine::Route::Datagram(hash, datagram) => {
                            let lane = lane_of(hash, lane_count);
                            let batch = &mut lanes.filling[lane];
                            batch.datagrams.push(datagram);
                            (
                                lane,
                                Bytes::Datagram(batch.datagrams.len() - 1),
                                Judge::Datagram,
                            )
                        }
                    };
                let batch = &mut lanes.filling[lane];
                batch.items.push(Item {
                    index,
                    time: frame.time,
                    bytes,
                    judge,
                });
                if batch.items.len() >= BATCH && !lanes.send(lane) {
                    run.problems.push("a packet thread stopped".to_string());
                    break 'files;
                }
                if run.packets.is_multiple_of(65_536) {
                    progress.report(path, run.packets, indexed.len());
                }
            }
            progress.finish();
            run.note_skipped(path, &reader);
            // A batch refers to one file's map: send what is left before the next file.
            lanes.send_all();
        }
        drop(lanes);
        for thread in threads {
            match thread.join() {
                Ok(mut matched) => indexed.append(&mut matched),
                Err(_) => run.problems.push("a packet thread failed".to_string()),
            }
        }
    });
    // Stable: the matches of one packet keep their order.
    indexed.sort_by_key(|(index, _)| *index);
    run.events = indexed.into_iter().map(|(_, event)| event).collect();
    run.elapsed = started.elapsed();
    run
}

/// The packet thread of a flow hash: `hash` scaled into `0..lanes` by a multiply, as the
/// reader does this for every packet and a 64-bit division takes tens of cycles (5% of
/// the reader's time in perf).
fn lane_of(hash: u64, lanes: usize) -> usize {
    ((u128::from(hash) * lanes as u128) >> 64) as usize
}

/// A packet thread's batch is sent, full or not, once its first frame lies this far behind
/// the reader in a mapped file, so that the pages held for frames not yet judged stay few.
const STALE_AFTER: usize = 4 << 20;
/// How often, in bytes of a mapped file, the reader sends stale batches and moves the
/// point from which it keeps the file's pages mapped.
const CHECK_EVERY: usize = 1 << 20;

/// The reader's side of the packet threads: per thread, the batch being filled, the queue
/// to it, and the batches sent to it that it may not have judged yet.
struct Lanes<'j> {
    filling: Vec<Batch>,
    queues: Vec<SyncSender<Batch>>,
    receivers: Vec<Receiver<Batch>>,
    sent: Vec<u64>,
    judged: &'j [AtomicU64],
    /// Per thread, oldest first: the number of a batch sent and the offset of its first
    /// frame in the mapped file.
    unjudged: Vec<VecDeque<(u64, usize)>>,
    pool: Pool,
}

impl<'j> Lanes<'j> {
    fn new(judged: &'j [AtomicU64], judged_batches: Receiver<Batch>) -> Self {
        let threads = judged.len();
        let mut pool = Pool {
            judged: judged_batches,
            made: 0,
            limit: threads * BATCHES_PER_THREAD,
        };
        let (queues, receivers) = (0..threads)
            .map(|_| std::sync::mpsc::sync_channel::<Batch>(BATCHES_QUEUED))
            .unzip();
        Self {
            filling: (0..threads).map(|_| pool.take(&None)).collect(),
            queues,
            receivers,
            sent: vec![0; threads],
            judged,
            unjudged: vec![VecDeque::new(); threads],
            pool,
        }
    }

    /// The receiving ends of the queues, one per packet thread (once).
    fn receivers(&mut self) -> Vec<Receiver<Batch>> {
        std::mem::take(&mut self.receivers)
    }

    /// The frames that follow are in `map` (`None`: copied into the batches).
    fn start_file(&mut self, map: Option<std::sync::Arc<memmap2::Mmap>>) {
        for batch in &mut self.filling {
            batch.map.clone_from(&map);
        }
        // Offsets in the previous file's map mean nothing for this one.
        for unjudged in &mut self.unjudged {
            unjudged.clear();
        }
    }

    /// Sends `lane`'s batch to its thread; false when the thread has stopped.
    fn send(&mut self, lane: usize) -> bool {
        let fresh = self.pool.take(&self.filling[lane].map);
        let batch = std::mem::replace(&mut self.filling[lane], fresh);
        let first_mapped = batch.first_mapped;
        if self.queues[lane].send(batch).is_err() {
            return false;
        }
        if let Some(offset) = first_mapped {
            self.unjudged[lane].push_back((self.sent[lane], offset));
        }
        self.sent[lane] += 1;
        true
    }

    /// Sends every batch that holds frames.
    fn send_all(&mut self) {
        for lane in 0..self.filling.len() {
            if !self.filling[lane].items.is_empty() {
                // A stopped thread is reported where a full batch cannot be sent.
                let _ = self.send(lane);
            }
        }
    }

    /// Sends every batch whose first frame lies `STALE_AFTER` behind `at`.
    fn send_stale(&mut self, at: usize) -> bool {
        for lane in 0..self.filling.len() {
            let stale = self.filling[lane]
                .first_mapped
                .is_some_and(|first| at - first.min(at) > STALE_AFTER);
            if stale && !self.send(lane) {
                return false;
            }
        }
        true
    }

    /// Where the first frame not yet judged lies in the mapped file (`usize::MAX`: none).
    fn unread_from(&mut self) -> usize {
        let mut first = usize::MAX;
        for ((unjudged, judged), filling) in
            self.unjudged.iter_mut().zip(self.judged).zip(&self.filling)
        {
            let judged = judged.load(Ordering::Acquire);
            while unjudged.front().is_some_and(|(number, _)| *number < judged) {
                unjudged.pop_front();
            }
            let oldest = unjudged.front().map(|(_, offset)| *offset);
            for offset in oldest.into_iter().chain(filling.first_mapped) {
                first = first.min(offset);
            }
        }
        first
    }

    /// Waits until every packet thread has judged every batch sent to it.
    fn wait_until_judged(&self) {
        while self
            .judged
            .iter()
            .zip(&self.sent)
            .any(|(judged, sent)| judged.load(Ordering::Acquire) < *sent)
        {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// Where `batch` finds `frame`'s bytes: in the mapped file, or copied into the batch.
fn frame_bytes(batch: &mut Batch, frame: &crate::source::pcap::Frame<'_>) -> Bytes {
    // A pcap record's length is a 32-bit field.
    let len = u32::try_from(frame.data.len()).unwrap_or(u32::MAX);
    match frame.mapped_at {
        Some(start) if batch.map.is_some() => {
            batch.first_mapped.get_or_insert(start);
            Bytes::Mapped { start, len }
        }
        _ => {
            let start = batch.owned.len();
            batch.owned.extend_from_slice(frame.data);
            Bytes::Owned { start, len }
        }
    }
}

/// A packet thread of `read_files`: judges its batches (handing each back
/// emptied, and counting it in `judged`), returns its matches.
fn judge_batches(
    engine: &Engine,
    batches: Receiver<Batch>,
    give_back: &std::sync::mpsc::Sender<Batch>,
    judged: &AtomicU64,
    offloaded: Option<std::sync::Arc<std::collections::HashSet<std::net::IpAddr>>>,
) -> Vec<(u64, FlowEvent)> {
    let mut worker = engine.worker();
    worker.set_sweeping(false);
    if let Some(offloaded) = offloaded {
        worker.trust_capture_checksums(offloaded);
    }
    let mut events = Vec::new();
    let mut matched = Vec::new();
    for batch in batches {
        let mapped: &[u8] = batch.map.as_deref().map_or(&[], |m| &m[..]);
        for item in &batch.items {
            match item.bytes {
                Bytes::Mapped { start, len } | Bytes::Owned { start, len } => {
                    let source = match item.bytes {
                        Bytes::Mapped { .. } => mapped,
                        _ => &batch.owned,
                    };
                    let frame = source.get(start..start + len as usize).unwrap_or_default();
                    let routed = match &item.judge {
                        Judge::Peeked(link, probe) => Routed::Peeked(*link, frame, probe),
                        Judge::Parsed(at) => match batch.layouts.get(*at) {
                            Some(layout) => Routed::Frame(frame, layout),
                            None => continue,
                        },
                        Judge::Datagram => continue,
                    };
                    worker.process_routed(routed, item.time, &mut events);
                }
                Bytes::Datagram(at) => {
                    if let Some(datagram) = batch.datagrams.get(at) {
                        let routed = Routed::Datagram(datagram);
                        worker.process_routed(routed, item.time, &mut events);
                    }
                }
            }
            matched.extend(events.drain(..).map(|e| (item.index, e)));
        }
        judged.fetch_add(1, Ordering::Release);
        let mut batch = batch;
        batch.map = None;
        batch.owned.clear();
        batch.datagrams.clear();
        batch.layouts.clear();
        batch.items.clear();
        batch.first_mapped = None;
        let _ = give_back.send(batch);
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::lane_of;

    #[test]
    fn flow_hashes_spread_over_every_lane() {
        for lanes in [1, 2, 3, 8] {
            let mut per_lane = vec![0u32; lanes];
            // Well-mixed hashes of distinct keys, as the router's are.
            for key in 0u64..30_000 {
                let hash = std::hash::BuildHasher::hash_one(
                    &std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(),
                    key,
                );
                per_lane[lane_of(hash, lanes)] += 1;
            }
            let fair = 30_000 / lanes as u32;
            for count in per_lane {
                assert!(
                    count > fair * 9 / 10 && count < fair * 11 / 10,
                    "{lanes} lanes: {count}"
                );
            }
            assert_eq!(lane_of(u64::MAX, lanes), lanes - 1);
            assert_eq!(lane_of(0, lanes), 0);
        }
    }
}
