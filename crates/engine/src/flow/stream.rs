//! [`StreamBuf`]: bounded reassembly of one direction of a TCP stream, from a base sequence
//! number. Segments may arrive out of order, repeat or overlap. By default the first copy of
//! a byte wins (what Linux keeps for data it has already queued in order); overlapping bytes
//! that differ are reported, and [`StreamBuf::insert_last_wins`] keeps the later copy for a
//! second view of the stream (what Linux keeps when a later out-of-order segment covers an
//! earlier one). Only the contiguous prefix is handed to the parsers. At most [`MAX_STREAM_BYTES`] bytes and [`MAX_GAPS`] separate ranges
//! are held; going over either is reported, never a panic.

/// Bytes buffered per direction of a flow: a 16 KiB ClientHello plus its record headers and
/// room for a few out-of-order segments.
pub const MAX_STREAM_BYTES: usize = 20 * 1024;
/// Separate filled ranges kept (holes between out-of-order segments).
pub const MAX_GAPS: usize = 16;

/// What happened to an inserted segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Stored (possibly partly, when it overlapped known bytes).
    Stored,
    /// Stored, and it overlapped known bytes with different ones.
    Conflict,
    /// Entirely before the base: a retransmission of consumed bytes.
    Old,
    /// Would extend past [`MAX_STREAM_BYTES`] or create more than [`MAX_GAPS`] ranges.
    OverCap,
}

#[derive(Clone, Debug)]
pub struct StreamBuf {
    base_seq: u32,
    data: Vec<u8>,
    /// Filled ranges as (start, end) offsets from `base_seq`, sorted and disjoint.
    filled: Vec<(u32, u32)>,
}

impl StreamBuf {
    pub fn new(base_seq: u32) -> Self {
        Self {
            base_seq,
            data: Vec::new(),
            filled: Vec::new(),
        }
    }

    /// Stores the segment that starts at sequence number `seq`; known bytes are kept.
    pub fn insert(&mut self, seq: u32, payload: &[u8]) -> Insert {
        self.put(seq, payload, false)
    }

    /// Stores the segment that starts at sequence number `seq`, overwriting known bytes.
    pub fn insert_last_wins(&mut self, seq: u32, payload: &[u8]) -> Insert {
        self.put(seq, payload, true)
    }

    fn put(&mut self, seq: u32, payload: &[u8], last_wins: bool) -> Insert {
        if payload.is_empty() {
            return Insert::Stored;
        }
        // Sequence arithmetic is modulo 2^32 (RFC 9293 §3.4); offsets "before" the base
        // appear as huge values and are trimmed as retransmissions.
        let offset = seq.wrapping_sub(self.base_seq) as i32 as i64;
        let end = offset + payload.len() as i64;
        if end <= 0 {
            return Insert::Old;
        }
        let (start, payload) = if offset < 0 {
            let skip = usize::try_from(-offset).unwrap_or(usize::MAX);
            (0usize, payload.get(skip..).unwrap_or(&[]))
        } else {
            (offset as usize, payload)
        };
        let end = start + payload.len();
        if end > MAX_STREAM_BYTES {
            return Insert::OverCap;
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        let mut conflict = false;
        for &(filled_start, filled_end) in &self.filled {
            let (from, to) = (
                start.max(filled_start as usize),
                end.min(filled_end as usize),
            );
            if from < to {
                let known = self.data.get(from..to);
                conflict |= known != payload.get(from - start..to - start);
            }
        }
        if last_wins {
            self.copy(start, end, start, payload);
        } else {
            // Write only the bytes not already filled: the first copy wins.
            let mut cursor = start;
            let ranges: Vec<(u32, u32)> = self.filled.clone();
            for (filled_start, filled_end) in ranges.iter().map(|&(s, e)| (s as usize, e as usize))
            {
                if filled_end <= cursor || filled_start >= end {
                    continue;
                }
                if filled_start > cursor {
                    self.copy(cursor, filled_start, start, payload);
                }
                cursor = cursor.max(filled_end);
            }
            if cursor < end {
                self.copy(cursor, end, start, payload);
            }
        }
        if !self.mark_filled(start as u32, end as u32) {
            return Insert::OverCap;
        }
        if conflict {
            Insert::Conflict
        } else {
            Insert::Stored
        }
    }

    /// The bytes from the base on that have no hole.
    pub fn contiguous(&self) -> &[u8] {
        match self.filled.first() {
            Some(&(0, end)) => self.data.get(..end as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Drops `len` bytes from the front (a message was consumed) and moves the base on.
    pub fn consume(&mut self, len: usize) {
        let len = len.min(self.data.len());
        self.data.drain(..len);
        self.base_seq = self.base_seq.wrapping_add(len as u32);
        let len = len as u32;
        self.filled = self
            .filled
            .iter()
            .filter(|&&(_, e)| e > len)
            .map(|&(s, e)| (s.saturating_sub(len), e - len))
            .collect();
    }

    /// Buffered bytes (including holes).
    pub fn buffered(&self) -> usize {
        self.data.len()
    }

    fn copy(&mut self, from: usize, to: usize, payload_start: usize, payload: &[u8]) {
        let source = payload.get(from - payload_start..to - payload_start);
        let target = self.data.get_mut(from..to);
        if let (Some(source), Some(target)) = (source, target) {
            target.copy_from_slice(source);
        }
    }

    fn mark_filled(&mut self, start: u32, end: u32) -> bool {
        let mut merged = (start, end);
        let mut kept = Vec::with_capacity(self.filled.len() + 1);
        for &(s, e) in &self.filled {
            if e < merged.0 || s > merged.1 {
                kept.push((s, e));
            } else {
                merged = (merged.0.min(s), merged.1.max(e));
            }
        }
        kept.push(merged);
        kept.sort_unstable();
        if kept.len() > MAX_GAPS {
            return false;
        }
        self.filled = kept;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_in_order_segments() {
        let mut buf = StreamBuf::new(1000);
        assert_eq!(buf.insert(1000, b"hello "), Insert::Stored);
        assert_eq!(buf.insert(1006, b"world"), Insert::Stored);
        assert_eq!(buf.contiguous(), b"hello world");
    }

    #[test]
    fn holds_out_of_order_segments_until_the_hole_fills() {
        let mut buf = StreamBuf::new(0);
        buf.insert(6, b"world");
        assert_eq!(buf.contiguous(), b"");
        buf.insert(0, b"hello ");
        assert_eq!(buf.contiguous(), b"hello world");
    }

    #[test]
    fn first_copy_wins_on_overlap() {
        let mut buf = StreamBuf::new(0);
        buf.insert(0, b"abcd");
        assert_eq!(buf.insert(2, b"XXYYef"), Insert::Conflict);
        assert_eq!(buf.contiguous(), b"abcdYYef");
        // The same bytes again are no conflict.
        assert_eq!(buf.insert(1, b"bcdY"), Insert::Stored);
    }

    #[test]
    fn last_copy_wins_when_asked() {
        let mut buf = StreamBuf::new(0);
        buf.insert(0, b"abcd");
        assert_eq!(buf.insert_last_wins(2, b"XXYYef"), Insert::Conflict);
        assert_eq!(buf.contiguous(), b"abXXYYef");
    }

    #[test]
    fn retransmission_of_consumed_bytes_is_old() {
        let mut buf = StreamBuf::new(100);
        buf.insert(100, b"abcdef");
        buf.consume(4);
        assert_eq!(buf.contiguous(), b"ef");
        assert_eq!(buf.insert(100, b"ab"), Insert::Old);
        assert_eq!(buf.insert(102, b"cdefgh"), Insert::Stored);
        assert_eq!(buf.contiguous(), b"efgh");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut buf = StreamBuf::new(u32::MAX - 1);
        buf.insert(u32::MAX - 1, b"ab");
        buf.insert(0, b"cd");
        assert_eq!(buf.contiguous(), b"abcd");
    }

    #[test]
    fn rejects_bytes_past_the_cap() {
        let mut buf = StreamBuf::new(0);
        assert_eq!(buf.insert(MAX_STREAM_BYTES as u32, b"x"), Insert::OverCap);
        assert_eq!(buf.buffered(), 0);
    }

    #[test]
    fn rejects_more_holes_than_the_cap() {
        let mut buf = StreamBuf::new(0);
        for i in 0..MAX_GAPS as u32 {
            assert_eq!(buf.insert(10 + i * 10, b"x"), Insert::Stored);
        }
        assert_eq!(buf.insert(10 + MAX_GAPS as u32 * 10, b"x"), Insert::OverCap);
    }
}
