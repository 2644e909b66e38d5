//! Reading pcap and pcapng files (with the maintained `pcap-file` crate) into frames for the
//! engine. Detects the format from the magic number, maps link types, rescales pcapng
//! timestamps by each interface's `if_tsresol`, and counts bytes read for progress reports.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

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
}

enum Format {
    Pcap {
        reader: PcapReader<CountingReader>,
        link: Option<LinkType>,
        link_number: u32,
    },
    PcapNg {
        reader: PcapNgReader<CountingReader>,
        /// Per interface: link type and ticks per second.
        interfaces: Vec<(Option<LinkType>, u32, u64)>,
    },
}

/// A pcap or pcapng file being read.
pub struct CaptureReader {
    format: Format,
    bytes_read: Arc<AtomicU64>,
    size: u64,
    packets: u64,
    /// Packets skipped because their interface's link type is not supported.
    pub skipped: u64,
    /// Link types of skipped packets (first seen), for the warning.
    pub skipped_link_types: Vec<u32>,
    owned: Vec<u8>,
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
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
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
        if got < 4 {
            return Err(CaptureError::NotACapture(magic_bytes));
        }
        let file = File::open(path).map_err(CaptureError::Open)?;
        let bytes_read = Arc::new(AtomicU64::new(0));
        let counting = CountingReader {
            inner: BufReader::with_capacity(1 << 20, file),
            count: Arc::clone(&bytes_read),
        };
        let corrupt = |e: pcap_file::PcapError| CaptureError::Corrupt {
            packets: 0,
            reason: e.to_string(),
        };
        let format = if PCAP_MAGICS.contains(&magic) {
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
        } else if magic == PCAPNG_MAGIC {
            Format::PcapNg {
                reader: PcapNgReader::new(counting).map_err(corrupt)?,
                interfaces: Vec::new(),
            }
        } else {
            return Err(CaptureError::NotACapture(magic_bytes));
        };
        Ok(Self {
            format,
            bytes_read,
            size,
            packets: 0,
            skipped: 0,
            skipped_link_types: Vec::new(),
            owned: Vec::new(),
        })
    }

    /// File size in bytes, and a shared counter of the bytes read so far (for progress).
    pub fn progress(&self) -> (u64, Arc<AtomicU64>) {
        (self.size, Arc::clone(&self.bytes_read))
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, CaptureError>> {
        let packets = self.packets;
        let corrupt = |e: pcap_file::PcapError| CaptureError::Corrupt {
            packets,
            reason: e.to_string(),
        };
        match &mut self.format {
            Format::Pcap {
                reader,
                link,
                link_number,
            } => {
                let packet = match reader.next_packet()? {
                    Ok(packet) => packet,
                    Err(e) => return Some(Err(corrupt(e))),
                };
                let Some(link) = *link else {
                    return Some(Err(CaptureError::UnsupportedLinkType(*link_number)));
                };
                self.packets += 1;
                self.owned.clear();
                self.owned.extend_from_slice(&packet.data);
                Some(Ok(Frame {
                    link,
                    time: packet.timestamp,
                    data: &self.owned,
                }))
            }
            Format::PcapNg { reader, interfaces } => loop {
                let block = match reader.next_block()? {
                    Ok(block) => block,
                    Err(e) => return Some(Err(corrupt(e))),
                };
                match block {
                    Block::SectionHeader(_) => interfaces.clear(),
                    Block::InterfaceDescription(description) => {
                        let number = u32::from(description.linktype);
                        let resolution = description
                            .options
                            .iter()
                            .find_map(|o| match o {
                                InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                                _ => None,
                            })
                            .unwrap_or(6);
                        interfaces.push((
                            LinkType::from_linktype(number),
                            number,
                            ticks_per_second(resolution),
                        ));
                    }
                    Block::EnhancedPacket(packet) => {
                        let Some(&(link, number, ticks)) =
                            interfaces.get(packet.interface_id as usize)
                        else {
                            return Some(Err(CaptureError::Corrupt {
                                packets,
                                reason: format!(
                                    "packet names interface {} that was never described",
                                    packet.interface_id
                                ),
                            }));
                        };
                        self.packets += 1;
                        let Some(link) = link else {
                            self.skipped += 1;
                            if !self.skipped_link_types.contains(&number) {
                                self.skipped_link_types.push(number);
                            }
                            continue;
                        };
                        // pcap-file reports the raw tick count as nanoseconds.
                        let raw = packet.timestamp.as_nanos();
                        let time = ticks_to_duration(raw, ticks);
                        self.owned.clear();
                        self.owned.extend_from_slice(&packet.data);
                        return Some(Ok(Frame {
                            link,
                            time,
                            data: &self.owned,
                        }));
                    }
                    Block::SimplePacket(packet) => {
                        self.packets += 1;
                        let Some(&(Some(link), _, _)) = interfaces.first() else {
                            self.skipped += 1;
                            continue;
                        };
                        self.owned.clear();
                        self.owned.extend_from_slice(&packet.data);
                        return Some(Ok(Frame {
                            link,
                            time: Duration::ZERO,
                            data: &self.owned,
                        }));
                    }
                    _ => {}
                }
            },
        }
    }
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
