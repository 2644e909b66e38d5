//! A bounds-checked big-endian byte reader: every read returns `None` past the end, and
//! errors carry where the reader was.

use super::At;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Where `bytes` starts in the message the outermost reader reads (sub-readers over a
    /// length-prefixed vector tell their errors in the message's offsets).
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            base: 0,
        }
    }

    pub(crate) fn at(bytes: &'a [u8], pos: usize) -> Self {
        Self {
            bytes,
            pos,
            base: 0,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The byte of the message the reader is at.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// `error`, found where the reader is.
    pub(crate) fn fault<E>(&self, error: E) -> At<E> {
        At::new(error, self.offset())
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let value = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(value)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        let bytes = self.take(2)?;
        Some(u16::from_be_bytes(*bytes.first_chunk::<2>()?))
    }

    pub(crate) fn u24(&mut self) -> Option<u32> {
        let bytes = self.take(3)?;
        let [a, b, c] = *bytes.first_chunk::<3>()?;
        Some(u32::from_be_bytes([0, a, b, c]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        let bytes = self.take(4)?;
        Some(u32::from_be_bytes(*bytes.first_chunk::<4>()?))
    }

    pub(crate) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    pub(crate) fn skip(&mut self, len: usize) -> Option<()> {
        self.take(len).map(|_| ())
    }

    /// A sub-reader over a length-prefixed vector (u8 length).
    pub(crate) fn vec8(&mut self) -> Option<Reader<'a>> {
        let len = usize::from(self.u8()?);
        self.sub(len)
    }

    /// A sub-reader over a length-prefixed vector (u16 length).
    pub(crate) fn vec16(&mut self) -> Option<Reader<'a>> {
        let len = usize::from(self.u16()?);
        self.sub(len)
    }

    /// A sub-reader over the next `len` bytes, in this reader's offsets.
    fn sub(&mut self, len: usize) -> Option<Reader<'a>> {
        let base = self.offset();
        self.take(len).map(|bytes| Reader {
            bytes,
            pos: 0,
            base,
        })
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or(&[])
    }
}
