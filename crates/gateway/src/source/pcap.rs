//! Reading pcap and pcapng files (with the maintained `pcap-file` crate's parsers) into
//! frames for the engine. Detects the format from the magic number, maps link types,
//! rescales pcapng timestamps by each interface's `if_tsresol`, and counts bytes read for
//! progress reports.
//!
//! A regular file is mapped into memory and its frames are handed out in place, with the
//! pages ahead of the reader mapped in and those behind it handed back (by a helper thread
//! for a large file, see [`window`]), so the process's resident memory stays small.
//! Anything that cannot be mapped (a pipe, a FIFO) is read in chunks into one buffer, and
//! its frames are handed out from there. A mapped file must not be truncated while it is
//! read (the kernel would end the process with SIGBUS); a capture that is still growing is
//! read as far as it was when it was opened.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::Mmap;
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::PcapError;

use crate::wire::LinkType;

mod window;
use window::Window;

/// Why a capture file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("not a pcap or pcapng file (magic number {0:02x?})")]
    NotACapture(Vec<u8>),
    #[error("link type {0} is not supported (telestrip reads Ethernet, raw IP, Linux cooked v1/v2, PPP, PPPoE, NFLOG and BSD loopback)")]
    UnsupportedLinkType(u32),
    #[error("corrupt or truncated after {packets} packets: {reason}")]
    Corrupt { packets: u64, reason: String },
}

/// One frame, borrowed from the reader until the next call.
pub struct Frame<'a> {
    pub link: LinkType,
    pub time: Duration,
    pub data: &'a [u8],
    /// Where `data` starts in [`CaptureReader::mapped`], when the file is mapped: lets a
    /// caller hand the frame to another thread without copying it.
    pub mapped_at: Option<usize>,
}

/// A pcap or pcapng file being read.
pub struct CaptureReader {
    source: Source,
    parser: Parser,
    /// A parse error ends the file: nothing after it is read.
    failed: bool,
    bytes_read: Arc<AtomicU64>,
    size: u64,
    counts: Counts,
}

/// What the reader counted so far.
#[derive(Default)]
struct Counts {
    packets: u64,
    /// Packets skipped because their interface's link type is not supported.
    skipped: u64,
    /// Link types of skipped packets (first seen), for the warning.
    skipped_link_types: Vec<u32>,
}

/// Per pcapng interface: link type (if supported), link-type number, ticks per second.
type Interface = (Option<LinkType>, u32, u64);

/// The format's parser, and what it learned from the file so far.
enum Parser {
    Pcap {
        parser: PcapParser,
        link: LinkType,
    },
    PcapNg {
        parser: PcapNgParser,
        interfaces: Vec<Interface>,
    },
}

enum Source {
    Mapped {
        map: Arc<Mmap>,
        /// Offset of the next record.
        at: usize,
        window: Window,
    },
    Chunked(Chunks),
}

/// A file read through one buffer: `buffer[start..end]` is read but not yet parsed.
struct Chunks {
    file: File,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

/// Bytes read at a time from a file that is not mapped.
const CHUNK: usize = 1 << 20;
/// The largest record a chunked read makes room for (pcapng blocks have no snap length).
const MAX_RECORD: usize = 64 << 20;

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl CaptureReader {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        Self::open_as(path, true)
    }

    /// Opens `path`, mapped if `map` and it is a regular file, else read in chunks.
    fn open_as(path: &Path, map: bool) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(CaptureError::Open)?;
        let metadata = file.metadata().map_err(CaptureError::Open)?;
        if metadata.is_dir() {
            return Err(CaptureError::Open(std::io::Error::other("is a directory")));
        }
        let mapped = if map && metadata.is_file() {
            map_file(&file)
        } else {
            None
        };
        let mut source = match mapped {
            Some(map) => {
                let map = Arc::new(map);
                Source::Mapped {
                    window: Window::new(&map),
                    map,
                    at: 0,
                }
            }
            None => {
                let mut chunks = Chunks {
                    file,
                    buffer: vec![0; CHUNK],
                    start: 0,
                    end: 0,
                    eof: false,
                };
                // The first bytes (the magic number is all that is needed here).
                while chunks.end < 4 && !chunks.eof {
                    chunks.fill(4).map_err(CaptureError::Open)?;
                }
                Source::Chunked(chunks)
            }
        };
        let head = source.unread();
        if head.is_empty() {
            return Err(CaptureError::Empty);
        }
        let magic: [u8; 4] = match head.first_chunk::<4>() {
            Some(magic) if PCAP_MAGICS.contains(magic) || *magic == PCAPNG_MAGIC => *magic,
            _ => {
                let shown = head.get(..4).unwrap_or(head).to_vec();
                return Err(CaptureError::NotACapture(shown));
            }
        };
        let parser = source.parser(magic)?;
        Ok(Self {
            source,
            parser,
            failed: false,
            bytes_read: Arc::new(AtomicU64::new(0)),
            size: metadata.len(),
            counts: Counts::default(),
        })
    }

    /// File size in bytes, and a shared counter of the bytes read so far (for progress).
    pub fn progress(&self) -> (u64, Arc<AtomicU64>) {
        (self.size, Arc::clone(&self.bytes_read))
    }

    pub fn packets(&self) -> u64 {
        self.counts.packets
    }

    /// Packets skipped because their interface's link type is not supported.
    pub fn skipped(&self) -> u64 {
        self.counts.skipped
    }

    /// Link types of skipped packets (first seen), for the warning.
    pub fn skipped_link_types(&self) -> &[u32] {
        &self.counts.skipped_link_types
    }

    /// The mapped file, when frames are read in place ([`Frame::mapped_at`] indexes it).
    pub fn mapped(&self) -> Option<&Arc<Mmap>> {
        match &self.source {
            Source::Mapped { map, .. } => Some(map),
            Source::Chunked(_) => None,
        }
    }

    /// Keeps the mapped file's pages from `offset` on mapped: frames there are still to be
    /// read by other threads. Without it, pages more than two steps behind the read position
    /// are handed back. No effect on a file read in chunks.
    pub fn hold_from(&mut self, offset: usize) {
        if let Source::Mapped { window, .. } = &mut self.source {
            window.hold_from(offset);
        }
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, CaptureError>> {
        if self.failed {
            return None;
        }
        let next = self.next_record();
        match next {
            Ok(Some(record)) => {
                let bytes: &[u8] = match &self.source {
                    Source::Mapped { map, .. } => map,
                    Source::Chunked(chunks) => &chunks.buffer,
                };
                let data = bytes.get(record.data.clone()).unwrap_or_default();
                Some(Ok(Frame {
                    link: record.link,
                    time: record.time,
                    data,
                    mapped_at: self.mapped().map(|_| record.data.start),
                }))
            }
            Ok(None) => None,
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }

    /// Finds the next frame's record: where its bytes are in the map or the buffer.
    fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        loop {
            if let Source::Mapped { map, at, window } = &mut self.source {
                window.follow(map, *at);
            }
            let offset = self.source.position();
            let step = next_in(self.source.unread(), &mut self.parser, &mut self.counts);
            match step {
                Step::Frame(mut record) => {
                    record.data = record.data.start + offset..record.data.end + offset;
                    let consumed = record.consumed;
                    // A chunked frame is read from before `start` until the next call.
                    self.source.advance(consumed);
                    match &self.source {
                        Source::Mapped { map, at, .. } => {
                            prefetch(map, *at);
                            self.bytes_read.store(*at as u64, Ordering::Relaxed);
                        }
                        Source::Chunked(_) => {
                            self.bytes_read
                                .fetch_add(consumed as u64, Ordering::Relaxed);
                        }
                    }
                    return Ok(Some(record));
                }
                Step::Skip(consumed) => {
                    self.source.advance(consumed);
                    if let Source::Chunked(_) = self.source {
                        self.bytes_read
                            .fetch_add(consumed as u64, Ordering::Relaxed);
                    }
                }
                Step::Error(error) => return Err(self.corrupt(error)),
                Step::Incomplete => match &mut self.source {
                    Source::Mapped { map, at, .. } if *at >= map.len() => return Ok(None),
                    Source::Mapped { .. } => {
                        return Err(self.corrupt(PcapError::IncompleteBuffer));
                    }
                    Source::Chunked(chunks) => {
                        if chunks.eof {
                            if chunks.start == chunks.end {
                                return Ok(None);
                            }
                            return Err(self.corrupt(PcapError::IncompleteBuffer));
                        }
                        let wanted = (chunks.end - chunks.start + CHUNK).min(MAX_RECORD);
                        if chunks.end - chunks.start >= MAX_RECORD {
                            return Err(self
                                .corrupt(PcapError::InvalidField("a record larger than 64 MiB")));
                        }
                        chunks
                            .fill(wanted)
                            .map_err(|e| self.corrupt(PcapError::IoError(e)))?;
                    }
                },
            }
        }
    }

    fn corrupt(&self, error: PcapError) -> CaptureError {
        CaptureError::Corrupt {
            packets: self.counts.packets,
            reason: describe(error),
        }
    }
}

impl Source {
    /// Where the unparsed bytes start, in the map or the buffer.
    fn position(&self) -> usize {
        match self {
            Source::Mapped { at, .. } => *at,
            Source::Chunked(chunks) => chunks.start,
        }
    }

    /// Marks `consumed` more bytes as parsed.
    fn advance(&mut self, consumed: usize) {
        match self {
            Source::Mapped { at, .. } => *at += consumed,
            Source::Chunked(chunks) => chunks.start += consumed,
        }
    }

    /// The bytes read but not parsed yet.
    fn unread(&self) -> &[u8] {
        match self {
            Source::Mapped { map, at, .. } => map.get(*at..).unwrap_or_default(),
            Source::Chunked(chunks) => chunks
                .buffer
                .get(chunks.start..chunks.end)
                .unwrap_or_default(),
        }
    }

    /// Reads the file header (pcap) or section header block (pcapng).
    fn parser(&mut self, magic: [u8; 4]) -> Result<Parser, CaptureError> {
        let corrupt = |e: PcapError| CaptureError::Corrupt {
            packets: 0,
            reason: describe(e),
        };
        loop {
            let head = self.unread();
            let parsed = if magic == PCAPNG_MAGIC {
                PcapNgParser::new(head).map(|(rest, parser)| {
                    (
                        head.len() - rest.len(),
                        Parser::PcapNg {
                            parser,
                            interfaces: Vec::new(),
                        },
                    )
                })
            } else {
                PcapParser::new(head).and_then(|(rest, parser)| {
                    let number = u32::from(parser.header().datalink);
                    let link = LinkType::from_linktype(number)
                        .ok_or(PcapError::InvalidField("unsupported link type"))?;
                    Ok((head.len() - rest.len(), Parser::Pcap { parser, link }))
                })
            };
            match parsed {
                Ok((used, parser)) => {
                    self.advance(used);
                    return Ok(parser);
                }
                Err(PcapError::InvalidField("unsupported link type")) => {
                    let number = PcapParser::new(head)
                        .map(|(_, p)| u32::from(p.header().datalink))
                        .unwrap_or(0);
                    return Err(CaptureError::UnsupportedLinkType(number));
                }
                Err(PcapError::IncompleteBuffer) => match self {
                    Source::Chunked(chunks) if !chunks.eof => {
                        let wanted = chunks.end - chunks.start + CHUNK;
                        chunks.fill(wanted).map_err(CaptureError::Open)?;
                    }
                    _ => return Err(corrupt(PcapError::IncompleteBuffer)),
                },
                Err(error) => return Err(corrupt(error)),
            }
        }
    }
}

impl Chunks {
    /// Moves the unparsed bytes to the front and reads until `wanted` of them are there
    /// (or the file ends).
    fn fill(&mut self, wanted: usize) -> std::io::Result<()> {
        self.buffer.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buffer.len() < wanted {
            self.buffer.resize(wanted, 0);
        }
        while self.end < wanted && !self.eof {
            let free = self.buffer.get_mut(self.end..).unwrap_or_default();
            match self.file.read(free) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A frame's place: its bytes (relative to the slice parsed), link type, time, and the
/// length of its whole record.
struct Record {
    link: LinkType,
    time: Duration,
    data: Range<usize>,
    consumed: usize,
}

/// What the parser made of the bytes at the read position.
enum Step {
    Frame(Record),
    /// A record that holds no frame (a pcapng description block, a packet of an
    /// unsupported link type), this long.
    Skip(usize),
    /// The record is not complete in these bytes (or there are none).
    Incomplete,
    Error(PcapError),
}

/// Parses the record at the start of `bytes`.
fn next_in(bytes: &[u8], parser: &mut Parser, counts: &mut Counts) -> Step {
    if bytes.is_empty() {
        return Step::Incomplete;
    }
    let (rest, link, time, data) = match parser {
        Parser::Pcap { parser, link } => match parser.next_packet(bytes) {
            Ok((rest, packet)) => {
                counts.packets += 1;
                (
                    rest,
                    *link,
                    packet.timestamp,
                    offset_in(bytes, &packet.data),
                )
            }
            Err(PcapError::IncompleteBuffer) => return Step::Incomplete,
            Err(error) => return Step::Error(error),
        },
        Parser::PcapNg { parser, interfaces } => {
            let (rest, block) = match parser.next_block(bytes) {
                Ok(next) => next,
                Err(PcapError::IncompleteBuffer) => return Step::Incomplete,
                Err(error) => return Step::Error(error),
            };
            let consumed = bytes.len() - rest.len();
            match pcapng_frame(block, interfaces, counts) {
                Ok(Some((link, time, data))) => (rest, link, time, offset_in(bytes, data)),
                Ok(None) => return Step::Skip(consumed),
                Err(error) => return Step::Error(error),
            }
        }
    };
    match data {
        Some(data) => Step::Frame(Record {
            link,
            time,
            data,
            consumed: bytes.len() - rest.len(),
        }),
        None => Step::Error(PcapError::InvalidField("packet not read in place")),
    }
}

/// Where `inner` lies in `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

/// A packet block's link type, capture time and bytes.
type BlockFrame<'b> = (LinkType, Duration, &'b [u8]);

/// What one pcapng block means for the reader: a frame (link type, time, bytes), or
/// nothing (a description block, a packet of an unsupported link type, other blocks).
fn pcapng_frame<'b>(
    block: Block<'b>,
    interfaces: &mut Vec<Interface>,
    counts: &mut Counts,
) -> Result<Option<BlockFrame<'b>>, PcapError> {
    let data = |data: std::borrow::Cow<'b, [u8]>| match data {
        std::borrow::Cow::Borrowed(data) => Ok(data),
        std::borrow::Cow::Owned(_) => Err(PcapError::InvalidField("packet not read in place")),
    };
    match block {
        Block::SectionHeader(_) => interfaces.clear(),
        Block::InterfaceDescription(description) => interfaces.push(interface(&description)),
        Block::EnhancedPacket(packet) => {
            let Some(&(link, number, ticks)) = interfaces.get(packet.interface_id as usize) else {
                return Err(PcapError::InvalidField(
                    "packet names interface that was never described",
                ));
            };
            counts.packets += 1;
            let Some(link) = link else {
                counts.skipped += 1;
                if !counts.skipped_link_types.contains(&number) {
                    counts.skipped_link_types.push(number);
                }
                return Ok(None);
            };
            // pcap-file reports the raw tick count as nanoseconds.
            let time = ticks_to_duration(packet.timestamp.as_nanos(), ticks);
            return Ok(Some((link, time, data(packet.data)?)));
        }
        Block::SimplePacket(packet) => {
            counts.packets += 1;
            let Some(&(Some(link), _, _)) = interfaces.first() else {
                counts.skipped += 1;
                return Ok(None);
            };
            return Ok(Some((link, Duration::ZERO, data(packet.data)?)));
        }
        _ => {}
    }
    Ok(None)
}

fn interface(description: &InterfaceDescriptionBlock<'_>) -> Interface {
    let number = u32::from(description.linktype);
    let resolution = description
        .options
        .iter()
        .find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
            _ => None,
        })
        .unwrap_or(6);
    (
        LinkType::from_linktype(number),
        number,
        ticks_per_second(resolution),
    )
}

/// The words of a parse error for the user.
fn describe(error: PcapError) -> String {
    match error {
        PcapError::IncompleteBuffer => "the file ends inside a record".to_string(),
        PcapError::InvalidField(reason) => reason.to_string(),
        other => other.to_string(),
    }
}

/// Maps a regular file read-only; `None` when the system refuses (the caller reads it).
#[allow(unsafe_code)]
fn map_file(file: &File) -> Option<Mmap> {
    // SAFETY: the map is read-only and private to this process; the bytes are only ever
    // read as untrusted data. The one hazard, another process truncating the file while it
    // is read (SIGBUS), is documented in the module docs and the README.
    let map = unsafe { Mmap::map(file) }.ok()?;
    // The file is read front to back once: ask for read-ahead.
    let _ = map.advise(memmap2::Advice::Sequential);
    Some(map)
}

/// Asks the CPU to fetch the next record's first bytes while this frame is judged: records
/// are walked as a chain (each header gives the next one's place), so without it every
/// record header of a mapped file would be a cache miss waited for.
#[allow(unsafe_code)]
fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in [at, at + 64] {
        if let Some(byte) = bytes.get(line) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: a prefetch is a hint; it never faults, and the pointer comes from a
            // live slice.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}

/// pcapng `if_tsresol`: high bit clear → 10^-n s per tick, set → 2^-n s per tick.
fn ticks_per_second(resolution: u8) -> u64 {
    let exponent = u32::from(resolution & 0x7f);
    if resolution & 0x80 == 0 {
        10u64.checked_pow(exponent).unwrap_or(1_000_000)
    } else {
        1u64.checked_shl(exponent).unwrap_or(1_000_000)
    }
}

fn ticks_to_duration(ticks: u128, per_second: u64) -> Duration {
    let per_second = u128::from(per_second.max(1));
    let seconds = (ticks / per_second).min(u128::from(u64::MAX)) as u64;
    let nanos = ((ticks % per_second) * 1_000_000_000 / per_second) as u32;
    Duration::new(seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    use std::borrow::Cow;
    use telestrip_testkit::{client_hello, tls_flow, Hosts};

    /// Every frame (link, time, bytes) and the error that ended the file, if any.
    type Frames = Vec<(LinkType, Duration, Vec<u8>)>;

    fn read_all(path: &Path, map: bool) -> (Frames, Option<String>) {
        let mut reader = CaptureReader::open_as(path, map).unwrap();
        assert_eq!(reader.mapped().is_some(), map);
        let mut frames = Vec::new();
        while let Some(next) = reader.next_frame() {
            match next {
                Ok(frame) => frames.push((frame.link, frame.time, frame.data.to_vec())),
                Err(error) => return (frames, Some(error.to_string())),
            }
        }
        (frames, None)
    }

    fn frames() -> Vec<Vec<u8>> {
        let hosts = Hosts::new("192.0.2.10", 40000, "198.51.100.20", 443);
        tls_flow(&hosts, &client_hello("www.example.org"), 100)
    }

    fn write_pcapng(path: &Path, frames: &[Vec<u8>]) {
        let file = File::create(path).unwrap();
        let mut writer = PcapNgWriter::new(file).unwrap();
        let interface = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0xffff,
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        };
        writer.write_pcapng_block(interface).unwrap();
        for (i, frame) in frames.iter().enumerate() {
            let packet = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(1_700_000_000_000_000_000 + i as u64 * 1500),
                original_len: frame.len() as u32,
                data: Cow::Borrowed(frame),
                options: vec![],
            };
            writer.write_pcapng_block(packet).unwrap();
        }
    }

    #[test]
    fn mapped_and_streamed_reading_give_the_same_frames() {
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("flow.pcap");
        telestrip_testkit::write_pcap(&pcap, &frames(), Duration::from_secs(1_700_000_000))
            .unwrap();
        let pcapng = dir.path().join("flow.pcapng");
        write_pcapng(&pcapng, &frames());
        for path in [&pcap, &pcapng] {
            let mapped = read_all(path, true);
            assert_eq!(mapped.0.len(), frames().len(), "{}", path.display());
            assert_eq!(mapped.1, None);
            assert!(mapped.0.iter().map(|f| &f.2).eq(frames().iter()));
            assert_eq!(mapped, read_all(path, false), "{}", path.display());
        }
        // pcapng nanosecond ticks are rescaled on both paths.
        assert_eq!(
            read_all(&pcapng, true).0[1].1,
            Duration::from_nanos(1_700_000_000_000_001_500)
        );
    }

    #[test]
    fn a_cut_file_ends_with_the_same_error_on_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("flow.pcap");
        telestrip_testkit::write_pcap(&pcap, &frames(), Duration::ZERO).unwrap();
        let pcapng = dir.path().join("flow.pcapng");
        write_pcapng(&pcapng, &frames());
        for path in [&pcap, &pcapng] {
            let bytes = std::fs::read(path).unwrap();
            std::fs::write(path, &bytes[..bytes.len() - 20]).unwrap();
            let (mapped, error) = read_all(path, true);
            assert_eq!(mapped.len(), frames().len() - 1, "{}", path.display());
            let error = error.unwrap();
            assert!(
                error.starts_with(&format!(
                    "corrupt or truncated after {} packets",
                    frames().len() - 1
                )),
                "{error}"
            );
            assert_eq!(read_all(path, false), (mapped, Some(error)));
        }
    }

    #[test]
    fn microsecond_and_nanosecond_ticks() {
        assert_eq!(
            ticks_to_duration(1_500_000, ticks_per_second(6)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            ticks_to_duration(1_500_000_000, ticks_per_second(9)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            ticks_to_duration(3, ticks_per_second(0x81)),
            Duration::from_millis(1500)
        );
    }
}
