//! [`Defrag`]: bounded reassembly of IP fragments (RFC 791 §3.2, RFC 8200 §4.5), so that a
//! ClientHello or DNS query sent in fragments is inspected like any other packet.
//!
//! Fragments that overlap discard the whole datagram and every later fragment of it until
//! it times out (RFC 5722; Linux does the same for IPv4 since 4.19, so no host reassembles
//! a version telestrip did not see). At most [`MAX_DATAGRAMS`] datagrams and [`MAX_BYTES`]
//! bytes are held per worker: the oldest datagram is evicted first, and one is given up
//! [`TIMEOUT_SECS`] after its first fragment (Linux's `ipfrag_time`). Buffers come from
//! etherparse's `IpDefragBuf`; this module adds the bounds, the timeout and the overlap rule.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber};

use crate::wire::Fragment;

/// Datagrams being reassembled at once, per worker.
pub const MAX_DATAGRAMS: usize = 4096;
/// Bytes held for datagrams being reassembled, per worker.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Seconds after its first fragment that an incomplete datagram is given up.
pub const TIMEOUT_SECS: u64 = 30;

/// What one fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembly {
    /// Stored; the datagram is not complete yet.
    Incomplete,
    /// The datagram is complete: its whole transport payload.
    Complete(Vec<u8>),
    /// It overlapped a fragment already held: the datagram is discarded (RFC 5722).
    Overlap,
    /// A fragment of a datagram already discarded for overlapping.
    Discarded,
    /// Not a valid fragment (misaligned, past 64 KiB, a second different end).
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DatagramKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    ip_number: u8,
}

struct Datagram {
    /// `None` once discarded for overlapping (kept until the timeout as a tombstone).
    buf: Option<IpDefragBuf>,
    started: u64,
    /// Bytes counted against [`MAX_BYTES`].
    bytes: usize,
    serial: u64,
}

/// Fragments in reassembly, bounded.
#[derive(Default)]
pub struct Defrag {
    datagrams: HashMap<DatagramKey, Datagram>,
    /// Keys oldest first, with the serial of the datagram they were queued for (a key may
    /// have been removed and reused since).
    order: VecDeque<(DatagramKey, u64)>,
    bytes: usize,
    next_serial: u64,
    /// Datagrams given up because the caps were reached or their time ran out.
    pub evicted: u64,
}

impl Defrag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Datagrams currently held (including discarded ones waiting for their timeout).
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds one fragment of the datagram from `src` to `dst`; `now` in seconds.
    pub fn add(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        fragment: &Fragment<'_>,
        now: u64,
    ) -> Reassembly {
        self.expire(now);
        let key = DatagramKey {
            src,
            dst,
            id: fragment.id,
            ip_number: fragment.ip_number,
        };
        let Ok(offset) = IpFragOffset::try_new(fragment.offset / 8) else {
            return Reassembly::Invalid;
        };
        let start = fragment.offset;
        let Some(end) = u16::try_from(fragment.data.len())
            .ok()
            .and_then(|len| start.checked_add(len))
        else {
            return Reassembly::Invalid;
        };
        if !self.datagrams.contains_key(&key) {
            self.make_room(usize::from(end));
            let serial = self.next_serial;
            self.next_serial += 1;
            self.order.push_back((key, serial));
            self.datagrams.insert(
                key,
                Datagram {
                    buf: Some(IpDefragBuf::new(
                        IpNumber(fragment.ip_number),
                        Vec::new(),
                        Vec::new(),
                    )),
                    started: now,
                    bytes: 0,
                    serial,
                },
            );
        }
        let Some(datagram) = self.datagrams.get_mut(&key) else {
            return Reassembly::Invalid;
        };
        let Some(buf) = datagram.buf.as_mut() else {
            return Reassembly::Discarded;
        };
        let overlaps = buf
            .sections()
            .iter()
            .any(|held| held.start < end && start < held.end);
        if overlaps {
            datagram.buf = None;
            self.bytes -= datagram.bytes;
            datagram.bytes = 0;
            return Reassembly::Overlap;
        }
        if buf.add(offset, fragment.more, fragment.data).is_err() {
            return Reassembly::Invalid;
        }
        let held = buf.data().len();
        self.bytes = self.bytes + held - datagram.bytes.min(held);
        datagram.bytes = datagram.bytes.max(held);
        if !buf.is_complete() {
            return Reassembly::Incomplete;
        }
        let Some(datagram) = self.datagrams.remove(&key) else {
            return Reassembly::Invalid;
        };
        self.bytes -= datagram.bytes;
        match datagram.buf {
            Some(buf) => Reassembly::Complete(buf.take_bufs().0),
            None => Reassembly::Discarded,
        }
    }

    /// Gives up datagrams whose time ran out (oldest first, so the scan stops early).
    fn expire(&mut self, now: u64) {
        while let Some(&(key, serial)) = self.order.front() {
            match self.datagrams.get(&key) {
                Some(datagram) if datagram.serial == serial => {
                    if datagram.started.saturating_add(TIMEOUT_SECS) > now {
                        return;
                    }
                    if datagram.buf.is_some() {
                        self.evicted += 1;
                    }
                    self.remove(key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// Evicts the oldest datagrams until one more of up to `bytes` fits.
    fn make_room(&mut self, bytes: usize) {
        while self.datagrams.len() >= MAX_DATAGRAMS || self.bytes + bytes > MAX_BYTES {
            let Some((key, serial)) = self.order.pop_front() else {
                return;
            };
            if self.datagrams.get(&key).is_some_and(|d| d.serial == serial) {
                self.evicted += 1;
                self.remove(key);
            }
        }
        // Stale keys of datagrams completed long ago must not pile up.
        if self.order.len() > 2 * MAX_DATAGRAMS {
            let datagrams = &self.datagrams;
            self.order
                .retain(|(key, serial)| datagrams.get(key).is_some_and(|d| d.serial == *serial));
        }
    }

    fn remove(&mut self, key: DatagramKey) {
        if let Some(datagram) = self.datagrams.remove(&key) {
            self.bytes -= datagram.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(id: u32, offset: u16, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            id,
            offset,
            more,
            ip_number: 17,
            data,
        }
    }

    fn addrs() -> (IpAddr, IpAddr) {
        ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
    }

    #[test]
    fn reassembles_in_any_order() {
        let (src, dst) = addrs();
        let whole: Vec<u8> = (0..40u8).collect();
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut defrag = Defrag::new();
            let pieces = [
                fragment(7, 0, true, &whole[..16]),
                fragment(7, 16, true, &whole[16..32]),
                fragment(7, 32, false, &whole[32..]),
            ];
            let results: Vec<Reassembly> = order
                .iter()
                .map(|&i| defrag.add(src, dst, &pieces[i], 0))
                .collect();
            assert_eq!(results[0], Reassembly::Incomplete);
            assert_eq!(results[1], Reassembly::Incomplete);
            assert_eq!(results[2], Reassembly::Complete(whole.clone()));
            assert!(defrag.is_empty());
            assert_eq!(defrag.bytes(), 0);
        }
    }

    #[test]
    fn an_overlap_discards_the_datagram_and_its_later_fragments() {
        let (src, dst) = addrs();
        let mut defrag = Defrag::new();
        let data = [1u8; 24];
        assert_eq!(
            defrag.add(src, dst, &fragment(9, 0, true, &data[..16]), 0),
            Reassembly::Incomplete
        );
        assert_eq!(
            defrag.add(src, dst, &fragment(9, 8, true, &data[..16]), 0),
            Reassembly::Overlap
        );
        assert_eq!(
            defrag.add(src, dst, &fragment(9, 16, false, &data[..8]), 0),
            Reassembly::Discarded
        );
        assert_eq!(defrag.bytes(), 0);
        // After the timeout the identification may be used again.
        assert_eq!(
            defrag.add(
                src,
                dst,
                &fragment(9, 0, true, &data[..16]),
                TIMEOUT_SECS + 1
            ),
            Reassembly::Incomplete
        );
    }

    #[test]
    fn incomplete_datagrams_time_out_and_the_caps_hold() {
        let (src, dst) = addrs();
        let mut defrag = Defrag::new();
        let data = [0u8; 1024];
        for id in 0..(MAX_DATAGRAMS as u32 + 100) {
            defrag.add(src, dst, &fragment(id, 0, true, &data), 1);
            assert!(defrag.len() <= MAX_DATAGRAMS);
            assert!(defrag.bytes() <= MAX_BYTES);
        }
        assert_eq!(defrag.evicted, 100);
        // A fragment far into the datagram reserves up to 64 KiB: counted, still capped.
        for id in 0..1000u32 {
            defrag.add(
                src,
                dst,
                &fragment(1_000_000 + id, 65_000, true, &data[..8]),
                2,
            );
            assert!(defrag.bytes() <= MAX_BYTES);
        }
        defrag.add(
            src,
            dst,
            &fragment(5, 0, true, &data[..8]),
            2 + TIMEOUT_SECS + 1,
        );
        assert_eq!(defrag.len(), 1);
    }

    #[test]
    fn misaligned_or_oversized_fragments_are_invalid() {
        let (src, dst) = addrs();
        let mut defrag = Defrag::new();
        assert_eq!(
            defrag.add(src, dst, &fragment(1, 0, true, &[0; 10]), 0),
            Reassembly::Invalid
        );
        assert_eq!(
            defrag.add(src, dst, &fragment(2, 65_528, false, &[0; 16]), 0),
            Reassembly::Invalid
        );
    }
}
