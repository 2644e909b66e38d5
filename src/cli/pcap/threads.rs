//! `telestrip pcap --threads N`: this thread reads the files, reassembles IP fragments and
//! judges DNS in capture order (`Worker::prepare`, `Worker::finish_route`), N packet threads
//! judge the other packets, each flow on one thread: plain TCP and UDP frames from what the
//! reader's peek gave (a packet of a flow in the thread's verdict cache is answered without
//! its frame being read again, else from the frame), the rest from the layout the reader
//! parsed. Every match carries its
//! packet's index, so the list comes out in capture order; idle flows are swept at the
//! packet where one thread would sweep, once every thread has caught up. The matches and
//! counters are those of one thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{next_frame, open_capture, PcapOptions, Progress, Run};
use crate::engine::{CacheProbe, Engine, FlowEvent, Routed};

/// Frames handed to a packet thread at a time.
const BATCH: usize = 4096;
/// Batches queued per packet thread: bounds memory and how far the reader runs ahead.
const BATCHES_QUEUED: usize = 4;

/// Where a batched frame's bytes are.
#[derive(Clone, Copy)]
enum Bytes {
    /// In the mapped capture file.
    Mapped { start: usize, len: usize },
    /// Copied into the batch (a capture read through a buffer).
    Owned { start: usize, len: usize },
    /// A reassembled datagram, by its index in the batch's datagrams.
    Datagram(usize),
}

struct Item {
    index: u64,
    time: Duration,
    bytes: Bytes,
    judge: Judge,
}

/// How a packet thread judges an item.
enum Judge {
    /// A plain TCP or UDP frame: from the thread's verdict cache, else from the frame.
    Peeked(crate::wire::LinkType, CacheProbe),
    /// From the layout the reader parsed.
    Parsed(crate::wire::Layout),
    /// A reassembled datagram (`Bytes::Datagram`).
    Datagram,
}

/// Frames for one packet thread, in capture order.
#[derive(Default)]
struct Batch {
    map: Option<std::sync::Arc<memmap2::Mmap>>,
    owned: Vec<u8>,
    datagrams: Vec<crate::engine::Datagram>,
    items: Vec<Item>,
}

/// Reads the files with `options.threads` packet threads.
pub(super) fn read_files(engine: &Engine, options: &PcapOptions) -> Run {
    use std::sync::mpsc::sync_channel;
    let started = Instant::now();
    let mut run = Run::default();
    let mut indexed: Vec<(u64, FlowEvent)> = Vec::new();
    // Batches each packet thread has judged, so the reader can wait for all of them.
    let judged: Vec<AtomicU64> = (0..options.threads).map(|_| AtomicU64::new(0)).collect();
    let mut sent = vec![0u64; options.threads];
    let offloaded = super::offloaded_sources(&options.files);
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(options.threads);
        let mut threads = Vec::with_capacity(options.threads);
        // Judged batches come back to be filled again (their buffers keep their capacity).
        let (give_back, take_back) = std::sync::mpsc::channel::<Batch>();
        for judged in &judged {
            let (send, receive) = sync_channel::<Batch>(BATCHES_QUEUED);
            queues.push(send);
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
        let mut pending: Vec<Batch> = (0..options.threads).map(|_| Batch::default()).collect();
        let mut events = Vec::new();
        let mut progress = Progress::new(options.progress);
        let lanes = options.threads as u64;
        'files: for path in &options.files {
            let Some(mut reader) = open_capture(path, &mut run) else {
                continue;
            };
            progress.start(&reader);
            let map = reader.mapped().cloned();
            for batch in &mut pending {
                batch.map.clone_from(&map);
            }
            while let Some(frame) = next_frame(&mut reader, path, &mut run) {
                let index = run.packets;
                run.packets += 1;
                run.bytes += frame.data.len() as u64;
                let now = frame.time.as_secs();
                let prepared = router.prepare(frame.link, frame.data, frame.time);
                if prepared.reaches_table() && engine.flows().sweep_due(now) {
                    // Idle flows are swept when every thread has judged every packet
                    // before this one, at this packet's time: as one thread would.
                    send_pending(&mut pending, &queues, &mut sent, &take_back);
                    wait_until_judged(&judged, &sent);
                    engine.flows().maybe_sweep(now);
                }
                let (lane, bytes, judge) =
                    match router.finish_route(prepared, frame.data, frame.time, &mut events) {
                        crate::engine::Route::Done(_) => {
                            indexed.extend(events.drain(..).map(|e| (index, e)));
                            continue;
                        }
                        crate::engine::Route::Peeked(hash, probe) => {
                            let lane = (hash % lanes) as usize;
                            let bytes = frame_bytes(&mut pending[lane], &frame);
                            (lane, bytes, Judge::Peeked(frame.link, probe))
                        }
                        crate::engine::Route::Frame(hash, layout) => {
                            let lane = (hash % lanes) as usize;
                            let bytes = frame_bytes(&mut pending[lane], &frame);
                            (lane, bytes, Judge::Parsed(layout))
                        }
                        crate::engine::Route::Datagram(hash, datagram) => {
                            let lane = (hash % lanes) as usize;
                            let batch = &mut pending[lane];
                            batch.datagrams.push(datagram);
                            (
                                lane,
                                Bytes::Datagram(batch.datagrams.len() - 1),
                                Judge::Datagram,
                            )
                        }
                    };
                let batch = &mut pending[lane];
                batch.items.push(Item {
                    index,
                    time: frame.time,
                    bytes,
                    judge,
                });
                if batch.items.len() >= BATCH {
                    let full = std::mem::replace(batch, take_back.try_recv().unwrap_or_default());
                    batch.map.clone_from(&full.map);
                    if queues[lane].send(full).is_err() {
                        run.problems.push("a packet thread stopped".to_string());
                        break 'files;
                    }
                    sent[lane] += 1;
                }
                if run.packets.is_multiple_of(65_536) {
                    progress.report(path, run.packets, indexed.len());
                }
            }
            progress.finish();
            run.note_skipped(path, &reader);
            // A batch refers to one file's map: send what is left before the next file.
            send_pending(&mut pending, &queues, &mut sent, &take_back);
        }
        drop(queues);
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

/// Where `batch` finds `frame`'s bytes: in the mapped file, or copied into the batch.
fn frame_bytes(batch: &mut Batch, frame: &crate::source::pcap::Frame<'_>) -> Bytes {
    match frame.mapped_at {
        Some(start) if batch.map.is_some() => Bytes::Mapped {
            start,
            len: frame.data.len(),
        },
        _ => {
            let start = batch.owned.len();
            batch.owned.extend_from_slice(frame.data);
            Bytes::Owned {
                start,
                len: frame.data.len(),
            }
        }
    }
}

/// Sends every batch that holds frames to its thread, with a fresh one in its place.
fn send_pending(
    pending: &mut [Batch],
    queues: &[std::sync::mpsc::SyncSender<Batch>],
    sent: &mut [u64],
    take_back: &std::sync::mpsc::Receiver<Batch>,
) {
    for ((batch, queue), sent) in pending.iter_mut().zip(queues).zip(sent) {
        if batch.items.is_empty() {
            continue;
        }
        let mut fresh = take_back.try_recv().unwrap_or_default();
        fresh.map.clone_from(&batch.map);
        if queue.send(std::mem::replace(batch, fresh)).is_ok() {
            *sent += 1;
        }
    }
}

/// Waits until every packet thread has judged every batch sent to it.
fn wait_until_judged(judged: &[AtomicU64], sent: &[u64]) {
    while judged
        .iter()
        .zip(sent)
        .any(|(judged, sent)| judged.load(Ordering::Acquire) < *sent)
    {
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// A packet thread of `read_files`: judges its batches (handing each back
/// emptied, and counting it in `judged`), returns its matches.
fn judge_batches(
    engine: &Engine,
    batches: std::sync::mpsc::Receiver<Batch>,
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
                    let frame = source.get(start..start + len).unwrap_or_default();
                    let routed = match &item.judge {
                        Judge::Peeked(link, probe) => Routed::Peeked(*link, frame, probe),
                        Judge::Parsed(layout) => Routed::Frame(frame, layout),
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
        batch.items.clear();
        let _ = give_back.send(batch);
    }
    matched
}
