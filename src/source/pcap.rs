//! Reading pcap and pcapng files (with the maintained `pcap-file` crate) into frames for the
//! engine. Detects the format from the magic number, maps link types, rescales pcapng
//! timestamps by each interface's `if_tsresol`, and counts bytes read for progress reports.
//!
//! A regular file is mapped into memory and its frames are handed out in place (no copy
//! through a read buffer); anything that cannot be mapped (a pipe, a FIFO) is read through a
//! buffer instead. A mapped file must not be truncated while it is read (the kernel would
//! end the process with SIGBUS); a capture that is still growing is read as far as it was
//! when it was opened.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::Mmap;
use pcap_file::pcap::{PcapParser, PcapReader};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgParser, PcapNgReader};
use pcap_file::PcapError;

use crate::wire::LinkType;

/// Why a capture file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("not a pcap or pcapng file (magic number {0:02x?})")]
    NotACapture(Vec<u8>),
    #[error("link type {0} is not supported (telestrip reads Ethernet, raw IP, Linux cooked v1/v2 and BSD loopback)")]
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

/// Per pcapng interface: link type (if supported), link-type number, ticks per second.
type Interface = (Option<LinkType>, u32, u64);

enum Format {
    Pcap {
        reader: PcapReader<CountingReader>,
        link: Option<LinkType>,
        link_number: u32,
    },
    PcapNg {
        reader: PcapNgReader<CountingReader>,
        interfaces: Vec<Interface>,
    },
}

/// The parser of a mapped file, which reads frames in place.
enum MappedFormat {
    Pcap {
        parser: PcapParser,
        link: LinkType,
    },
    PcapNg {
        parser: PcapNgParser,
        interfaces: Vec<Interface>,
    },
}

enum Body {
    Mapped {
        map: Arc<Mmap>,
        /// Offset of the next record.
        at: usize,
        format: MappedFormat,
        /// A parse error ends the file: nothing after it is read.
        failed: bool,
        /// Pages before this offset were handed back (see [`release_behind`]).
        released: usize,
    },
    Streamed {
        format: Format,
        owned: Vec<u8>,
    },
}

/// A pcap or pcapng file being read.
pub struct CaptureReader {
    body: Body,
    bytes_read: Arc<AtomicU64>,
    size: u64,
    packets: u64,
    /// Packets skipped because their interface's link type is not supported.
    pub skipped: u64,
    /// Link types of skipped packets (first seen), for the warning.
    pub skipped_link_types: Vec<u32>,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl CaptureReader {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let mut file = File::open(path).map_err(CaptureError::Open)?;
        let metadata = file.metadata().map_err(CaptureError::Open)?;
        if metadata.is_dir() {
            return Err(CaptureError::Open(std::io::Error::other("is a directory")));
        }
        let size = metadata.len();
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match file.read(magic.get_mut(got..).unwrap_or(&mut [])) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(CaptureError::Open(e)),
            }
        }
        if got == 0 {
            return Err(CaptureError::Empty);
        }
        let magic_bytes = magic.get(..got).unwrap_or(&[]).to_vec();
        if got < 4 || !(PCAP_MAGICS.contains(&magic) || magic == PCAPNG_MAGIC) {
            return Err(CaptureError::NotACapture(magic_bytes));
        }
        let bytes_read = Arc::new(AtomicU64::new(0));
        let body = if metadata.is_file() {
            match map_file(&file) {
                Some(map) => mapped_body(map)?,
                None => streamed_body(path, &bytes_read)?,
            }
        } else {
            streamed_body(path, &bytes_read)?
        };
        Ok(Self {
            body,
            bytes_read,
            size,
            packets: 0,
            skipped: 0,
            skipped_link_types: Vec::new(),
        })
    }

    /// File size in bytes, and a shared counter of the bytes read so far (for progress).
    pub fn progress(&self) -> (u64, Arc<AtomicU64>) {
        (self.size, Arc::clone(&self.bytes_read))
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The mapped file, when frames are read in place ([`Frame::mapped_at`] indexes it).
    pub fn mapped(&self) -> Option<&Arc<Mmap>> {
        match &self.body {
            Body::Mapped { map, .. } => Some(map),
            Body::Streamed { .. } => None,
        }
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, CaptureError>> {
        match &mut self.body {
            Body::Mapped {
                map,
                at,
                format,
                failed,
                released,
            } => {
                release_behind(map, *at, released);
                if *failed {
                    return None;
                }
                let next = next_mapped(
                    map,
                    at,
                    format,
                    &mut self.packets,
                    &mut self.skipped,
                    &mut self.skipped_link_types,
                );
                self.bytes_read.store(*at as u64, Ordering::Relaxed);
                if matches!(next, Some(Err(_))) {
                    *failed = true;
                }
                next
            }
            Body::Streamed { format, owned } => next_streamed(
                format,
                owned,
                &mut self.packets,
                &mut self.skipped,
                &mut self.skipped_link_types,
            ),
        }
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

/// Read pages stay mapped (and count as the process's resident memory) until handed back;
/// pages this far behind the read position are, in steps of the same size. Frames handed
/// to other threads are read well within this distance; one read later is still correct
/// (the page is mapped again from the file).
const RELEASE_DISTANCE: usize = 16 << 20;

#[allow(unsafe_code)]
fn release_behind(map: &Mmap, at: usize, released: &mut usize) {
    let until = at.saturating_sub(RELEASE_DISTANCE);
    if until < *released + RELEASE_DISTANCE {
        return;
    }
    // SAFETY: MADV_DONTNEED on a read-only file mapping only drops this process's page
    // table entries; a later read maps the unchanged file pages again. `released` is a
    // multiple of RELEASE_DISTANCE (page aligned) and the range lies inside the map.
    let _ = unsafe {
        map.unchecked_advise_range(
            memmap2::UncheckedAdvice::DontNeed,
            *released,
            until - *released,
        )
    };
    *released = until - until % RELEASE_DISTANCE;
}

fn mapped_body(map: Mmap) -> Result<Body, CaptureError> {
    let bytes: &[u8] = &map;
    let corrupt = |e: PcapError| CaptureError::Corrupt {
        packets: 0,
        reason: describe(e),
    };
    let (rest, format) = if bytes.starts_with(&PCAPNG_MAGIC) {
        let (rest, parser) = PcapNgParser::new(bytes).map_err(corrupt)?;
        (
            rest,
            MappedFormat::PcapNg {
                parser,
                interfaces: Vec::new(),
            },
        )
    } else {
        let (rest, parser) = PcapParser::new(bytes).map_err(corrupt)?;
        let link_number = u32::from(parser.header().datalink);
        let link = LinkType::from_linktype(link_number)
            .ok_or(CaptureError::UnsupportedLinkType(link_number))?;
        (rest, MappedFormat::Pcap { parser, link })
    };
    let at = bytes.len() - rest.len();
    Ok(Body::Mapped {
        map: Arc::new(map),
        at,
        format,
        failed: false,
        released: 0,
    })
}

fn streamed_body(path: &Path, bytes_read: &Arc<AtomicU64>) -> Result<Body, CaptureError> {
    let file = File::open(path).map_err(CaptureError::Open)?;
    let counting = CountingReader {
        inner: BufReader::with_capacity(1 << 20, file),
        count: Arc::clone(bytes_read),
    };
    let corrupt = |e: PcapError| CaptureError::Corrupt {
        packets: 0,
        reason: describe(e),
    };
    // The magic number was checked by the caller; a pcapng stream starts with its own.
    let mut peek = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut peek))
        .map_err(CaptureError::Open)?;
    let format = if peek == PCAPNG_MAGIC {
        Format::PcapNg {
            reader: PcapNgReader::new(counting).map_err(corrupt)?,
            interfaces: Vec::new(),
        }
    } else {
        let reader = PcapReader::new(counting).map_err(corrupt)?;
        let link_number = u32::from(reader.header().datalink);
        let link = LinkType::from_linktype(link_number);
        if link.is_none() {
            return Err(CaptureError::UnsupportedLinkType(link_number));
        }
        Format::Pcap {
            reader,
            link,
            link_number,
        }
    };
    Ok(Body::Streamed {
        format,
        owned: Vec::new(),
    })
}

/// The words of a parse error for the user.
fn describe(error: PcapError) -> String {
    match error {
        PcapError::IncompleteBuffer => "the file ends inside a record".to_string(),
        other => other.to_string(),
    }
}

/// Offset of `inner` within `outer`, when it lies inside it.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

fn next_mapped<'m>(
    map: &'m Mmap,
    at: &mut usize,
    format: &mut MappedFormat,
    packets: &mut u64,
    skipped: &mut u64,
    skipped_link_types: &mut Vec<u32>,
) -> Option<Result<Frame<'m>, CaptureError>> {
    let bytes: &'m [u8] = map;
    let corrupt = |packets: u64, e: PcapError| CaptureError::Corrupt {
        packets,
        reason: describe(e),
    };
    loop {
        let rest = bytes.get(*at..).unwrap_or(&[]);
        if rest.is_empty() {
            return None;
        }
        let (link, time, data, remaining) = match format {
            MappedFormat::Pcap { parser, link } => match parser.next_packet(rest) {
                Ok((remaining, packet)) => {
                    let Cow::Borrowed(data) = packet.data else {
                        return Some(Err(corrupt(
                            *packets,
                            PcapError::InvalidField("packet not read in place"),
                        )));
                    };
                    (*link, packet.timestamp, data, remaining)
                }
                Err(e) => return Some(Err(corrupt(*packets, e))),
            },
            MappedFormat::PcapNg { parser, interfaces } => {
                let (remaining, block) = match parser.next_block(rest) {
                    Ok(next) => next,
                    Err(e) => return Some(Err(corrupt(*packets, e))),
                };
                *at = bytes.len() - remaining.len();
                match pcapng_frame(block, interfaces, packets, skipped, skipped_link_types) {
                    Ok(Some((link, time, Cow::Borrowed(data)))) => (link, time, data, remaining),
                    Ok(Some(_)) => {
                        return Some(Err(corrupt(
                            *packets,
                            PcapError::InvalidField("packet not read in place"),
                        )))
                    }
                    Ok(None) => continue,
                    Err(error) => return Some(Err(error)),
                }
            }
        };
        if let MappedFormat::Pcap { .. } = format {
            *packets += 1;
        }
        *at = bytes.len() - remaining.len();
        prefetch(remaining);
        return Some(Ok(Frame {
            link,
            time,
            data,
            mapped_at: offset_in(bytes, data),
        }));
    }
}

/// Asks the CPU to fetch the next record's first bytes while this frame is processed:
/// mapped captures are read once, so every record header would otherwise be a cache miss.
#[allow(unsafe_code)]
fn prefetch(next: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint; it never faults, even on an invalid address, and
        // the pointer comes from a live slice.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(next.as_ptr().cast()) };
        if let Some(second) = next.get(64..) {
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(second.as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = next;
}

fn next_streamed<'o>(
    format: &mut Format,
    owned: &'o mut Vec<u8>,
    packets: &mut u64,
    skipped: &mut u64,
    skipped_link_types: &mut Vec<u32>,
) -> Option<Result<Frame<'o>, CaptureError>> {
    let corrupt = |packets: u64, e: PcapError| CaptureError::Corrupt {
        packets,
        reason: describe(e),
    };
    match format {
        Format::Pcap {
            reader,
            link,
            link_number,
        } => {
            let packet = match reader.next_packet()? {
                Ok(packet) => packet,
                Err(e) => return Some(Err(corrupt(*packets, e))),
            };
            let Some(link) = *link else {
                return Some(Err(CaptureError::UnsupportedLinkType(*link_number)));
            };
            *packets += 1;
            owned.clear();
            owned.extend_from_slice(&packet.data);
            Some(Ok(Frame {
                link,
                time: packet.timestamp,
                data: owned,
                mapped_at: None,
            }))
        }
        Format::PcapNg { reader, interfaces } => loop {
            let block = match reader.next_block()? {
                Ok(block) => block,
                Err(e) => return Some(Err(corrupt(*packets, e))),
            };
            match pcapng_frame(block, interfaces, packets, skipped, skipped_link_types) {
                Ok(Some((link, time, data))) => {
                    owned.clear();
                    owned.extend_from_slice(&data);
                    return Some(Ok(Frame {
                        link,
                        time,
                        data: owned,
                        mapped_at: None,
                    }));
                }
                Ok(None) => continue,
                Err(error) => return Some(Err(error)),
            }
        },
    }
}

/// A packet block's link type, capture time and bytes.
type BlockFrame<'b> = (LinkType, Duration, Cow<'b, [u8]>);

/// What one pcapng block means for the reader: a frame, or nothing (a description block,
/// a packet of an unsupported link type, other blocks).
fn pcapng_frame<'b>(
    block: Block<'b>,
    interfaces: &mut Vec<Interface>,
    packets: &mut u64,
    skipped: &mut u64,
    skipped_link_types: &mut Vec<u32>,
) -> Result<Option<BlockFrame<'b>>, CaptureError> {
    match block {
        Block::SectionHeader(_) => interfaces.clear(),
        Block::InterfaceDescription(description) => interfaces.push(interface(&description)),
        Block::EnhancedPacket(packet) => {
            let Some(&(link, number, ticks)) = interfaces.get(packet.interface_id as usize) else {
                return Err(CaptureError::Corrupt {
                    packets: *packets,
                    reason: format!(
                        "packet names interface {} that was never described",
                        packet.interface_id
                    ),
                });
            };
            *packets += 1;
            let Some(link) = link else {
                *skipped += 1;
                if !skipped_link_types.contains(&number) {
                    skipped_link_types.push(number);
                }
                return Ok(None);
            };
            // pcap-file reports the raw tick count as nanoseconds.
            let time = ticks_to_duration(packet.timestamp.as_nanos(), ticks);
            return Ok(Some((link, time, packet.data)));
        }
        Block::SimplePacket(packet) => {
            *packets += 1;
            let Some(&(Some(link), _, _)) = interfaces.first() else {
                *skipped += 1;
                return Ok(None);
            };
            return Ok(Some((link, Duration::ZERO, packet.data)));
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

struct CountingReader {
    inner: BufReader<File>,
    count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
