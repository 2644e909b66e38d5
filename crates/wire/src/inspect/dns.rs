//! DNS messages (RFC 1035 §4.1): questions, and A/AAAA/CNAME/HTTPS answers, over UDP or TCP.
//!
//! Takes one message (for TCP, [`split_tcp`] first takes the 2-byte length prefix off the
//! stream, RFC 1035 §4.2.2); returns names as [`Name`]. Compression pointers may only point
//! backwards (RFC 1035 §4.1.4 says a pointer refers to a prior occurrence), which rules out
//! loops; hops are capped as well. Never panics, never allocates.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::reader::Reader;
use super::At;
use super::{Name, Scan};

/// Fixed DNS header length (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Compression pointers followed for one name. Backward-only pointers already rule out loops;
/// a legitimate name has at most one pointer per label, and 127 labels is the wire limit.
pub const MAX_POINTER_HOPS: usize = 127;
/// Questions read from one message; real clients send one. More are counted, not read.
pub const MAX_QUESTIONS: usize = 8;
/// Answer records read from one response; enough for any CNAME chain plus address set.
pub const MAX_ANSWERS: usize = 64;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SVCB: u16 = 64;
pub const TYPE_HTTPS: u16 = 65;

/// What is wrong with a DNS message. Small and `Copy`: one counter per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("message shorter than the 12-byte header")]
    TruncatedHeader,
    #[error("message ends inside {0}")]
    Truncated(&'static str),
    #[error("compression pointer does not point backwards")]
    ForwardPointer,
    #[error("more than {MAX_POINTER_HOPS} compression pointers in one name")]
    TooManyPointers,
    #[error("label type 0b01/0b10 is reserved")]
    ReservedLabelType,
    #[error("name is longer than 255 octets or holds bytes that are not host name bytes")]
    BadName,
    #[error("record data length does not fit its type")]
    BadRecordData,
}

/// One question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
}

/// The answer data telestrip uses; everything else is kept as its type number.
/// A CNAME target is copied into a fixed [`Name`] on purpose: no allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Name),
    /// An SVCB or HTTPS record: its address hints and whether it offers ECH.
    Svcb(SvcbHints),
    Other(u16),
}

/// Address hints kept per SVCB/HTTPS record; more are ignored (real records have 1-4).
pub const MAX_HINTS: usize = 4;

/// What telestrip reads from SVCB/HTTPS record data (RFC 9460 §2.2, §7.3): the ipv4hint and
/// ipv6hint addresses a client may connect to without an A/AAAA lookup, and whether the
/// record carries an `ech` parameter (keys for encrypted ClientHellos).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvcbHints {
    pub v4: [Option<Ipv4Addr>; MAX_HINTS],
    pub v6: [Option<Ipv6Addr>; MAX_HINTS],
    pub ech: bool,
    /// The first ECHConfig of the `ech` parameter: its config_id and public name (the SNI
    /// real ECH ClientHellos show outside).
    pub ech_config: Option<(u8, Name)>,
}

impl SvcbHints {
    /// Every hinted address.
    pub fn addresses(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.v4
            .iter()
            .flatten()
            .map(|a| std::net::IpAddr::V4(*a))
            .chain(self.v6.iter().flatten().map(|a| std::net::IpAddr::V6(*a)))
    }
}

const SVC_PARAM_ECH: u16 = 5;
const SVC_PARAM_IPV4HINT: u16 = 4;
const SVC_PARAM_IPV6HINT: u16 = 6;

/// The first ECHConfig (version 0xfe0d) of an ECHConfigList (draft-ietf-tls-esni §4):
/// config_id and public_name. `None` when it is malformed or of another version.
fn read_ech_config(list: &[u8]) -> Option<(u8, Name)> {
    let mut reader = Reader::new(list);
    let mut configs = reader.vec16()?;
    let version = configs.u16()?;
    let mut contents = configs.vec16()?;
    if version != 0xfe0d {
        return None;
    }
    let config_id = contents.u8()?;
    contents.skip(2)?; // kem_id
    contents.vec16()?; // public_key
    contents.vec16()?; // cipher_suites
    contents.skip(1)?; // maximum_name_length
    let public_name = contents.vec8()?.rest();
    Some((config_id, Name::from_bytes(public_name)?))
}

/// A reader at the parameters of SVCB/HTTPS record data, past SvcPriority and TargetName
/// (labels without compression, RFC 9460 §2.2).
fn svcb_params(rdata: &[u8]) -> Result<Reader<'_>, At<DnsError>> {
    let bad = DnsError::BadRecordData;
    let mut reader = Reader::new(rdata);
    reader.skip(2).ok_or_else(|| reader.fault(bad))?;
    loop {
        let len = reader.u8().ok_or_else(|| reader.fault(bad))?;
        if len == 0 {
            return Ok(reader);
        }
        if len > 63 {
            return Err(reader.fault(bad));
        }
        reader
            .skip(usize::from(len))
            .ok_or_else(|| reader.fault(bad))?;
    }
}

/// Reads SVCB/HTTPS record data: priority, an uncompressed target name, then parameters.
fn read_svcb(rdata: &[u8]) -> Result<SvcbHints, At<DnsError>> {
    let bad = DnsError::BadRecordData;
    let mut reader = svcb_params(rdata)?;
    let mut hints = SvcbHints::default();
    while reader.remaining() > 0 {
        let key = reader.u16().ok_or_else(|| reader.fault(bad))?;
        let value = reader.vec16().ok_or_else(|| reader.fault(bad))?;
        let bytes = value.rest();
        match key {
            SVC_PARAM_IPV4HINT => {
                for (slot, chunk) in hints.v4.iter_mut().zip(bytes.chunks_exact(4)) {
                    *slot = <[u8; 4]>::try_from(chunk).ok().map(Ipv4Addr::from);
                }
            }
            SVC_PARAM_IPV6HINT => {
                for (slot, chunk) in hints.v6.iter_mut().zip(bytes.chunks_exact(16)) {
                    *slot = <[u8; 16]>::try_from(chunk).ok().map(Ipv6Addr::from);
                }
            }
            SVC_PARAM_ECH => {
                hints.ech = true;
                hints.ech_config = read_ech_config(bytes);
            }
            _ => {}
        }
    }
    Ok(hints)
}

/// One answer record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: Name,
    pub ttl: u32,
    pub data: RecordData,
}

/// A DNS message whose header has been read; questions and answers are read on demand.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    bytes: &'a [u8],
    pub id: u16,
    pub flags: u16,
    pub question_count: u16,
    pub answer_count: u16,
}

impl<'a> Message<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, At<DnsError>> {
        let mut reader = Reader::new(bytes);
        let (Some(id), Some(flags), Some(question_count), Some(answer_count)) =
            (reader.u16(), reader.u16(), reader.u16(), reader.u16())
        else {
            return Err(At::new(DnsError::TruncatedHeader, 0));
        };
        if bytes.len() < HEADER_LEN {
            return Err(At::new(DnsError::TruncatedHeader, 0));
        }
        Ok(Self {
            bytes,
            id,
            flags,
            question_count,
            answer_count,
        })
    }

    /// QR bit: this message is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }

    /// The questions, at most [`MAX_QUESTIONS`] of them.
    pub fn questions(&self) -> Questions<'a> {
        Questions {
            reader: Reader::at(self.bytes, HEADER_LEN),
            bytes: self.bytes,
            left: usize::from(self.question_count).min(MAX_QUESTIONS),
        }
    }

    /// The first question, the one every real client sends.
    pub fn first_question(&self) -> Result<Option<Question>, At<DnsError>> {
        self.questions().next().transpose()
    }

    /// The answer records, at most [`MAX_ANSWERS`] of them. Fails if the questions before
    /// them cannot be skipped.
    pub fn answers(&self) -> Result<Records<'a>, At<DnsError>> {
        let mut reader = Reader::at(self.bytes, HEADER_LEN);
        for _ in 0..self.question_count {
            skip_name(&mut reader)?;
            reader
                .skip(4)
                .ok_or_else(|| reader.fault(DnsError::Truncated("question")))?;
        }
        Ok(Records {
            reader,
            bytes: self.bytes,
            left: usize::from(self.answer_count).min(MAX_ANSWERS),
        })
    }
}

/// Iterator over questions; stops after the first error.
pub struct Questions<'a> {
    reader: Reader<'a>,
    bytes: &'a [u8],
    left: usize,
}

impl Iterator for Questions<'_> {
    type Item = Result<Question, At<DnsError>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let result = (|| {
            let name = read_name(self.bytes, &mut self.reader)?;
            let qtype = self
                .reader
                .u16()
                .ok_or_else(|| self.reader.fault(DnsError::Truncated("question")))?;
            self.reader
                .skip(2)
                .ok_or_else(|| self.reader.fault(DnsError::Truncated("question")))?;
            Ok(Question { name, qtype })
        })();
        if result.is_err() {
            self.left = 0;
        }
        Some(result)
    }
}

/// Iterator over answer records; stops after the first error.
pub struct Records<'a> {
    reader: Reader<'a>,
    bytes: &'a [u8],
    left: usize,
}

impl Iterator for Records<'_> {
    type Item = Result<Record, At<DnsError>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let result = self.read_record();
        if result.is_err() {
            self.left = 0;
        }
        Some(result)
    }
}

impl Records<'_> {
    fn read_record(&mut self) -> Result<Record, At<DnsError>> {
        let name = read_name(self.bytes, &mut self.reader)?;
        let truncated = DnsError::Truncated("resource record");
        let rtype = self
            .reader
            .u16()
            .ok_or_else(|| self.reader.fault(truncated))?;
        let _class = self
            .reader
            .u16()
            .ok_or_else(|| self.reader.fault(truncated))?;
        let ttl = self
            .reader
            .u32()
            .ok_or_else(|| self.reader.fault(truncated))?;
        let rdlength = usize::from(
            self.reader
                .u16()
                .ok_or_else(|| self.reader.fault(truncated))?,
        );
        let rdata_start = self.reader.position();
        let rdata = self
            .reader
            .take(rdlength)
            .ok_or_else(|| self.reader.fault(truncated))?;
        let data = match rtype {
            TYPE_A => RecordData::A(Ipv4Addr::from(
                *<&[u8; 4]>::try_from(rdata).map_err(|_| DnsError::BadRecordData)?,
            )),
            TYPE_AAAA => RecordData::Aaaa(Ipv6Addr::from(
                *<&[u8; 16]>::try_from(rdata).map_err(|_| DnsError::BadRecordData)?,
            )),
            TYPE_CNAME => {
                let mut target = Reader::at(self.bytes, rdata_start);
                RecordData::Cname(read_name(self.bytes, &mut target)?)
            }
            TYPE_SVCB | TYPE_HTTPS => RecordData::Svcb(read_svcb(rdata)?),
            other => RecordData::Other(other),
        };
        Ok(Record { name, ttl, data })
    }
}

/// How long resolvers and stubs may cache a rejected name's NXDOMAIN (the SOA's TTL and
/// minimum, RFC 2308 §5): long enough to spare a client's retries, short enough that a
/// name the rules stop blocking comes back soon.
pub const NXDOMAIN_CACHE_SECONDS: u32 = 60;

/// Writes into `out` an NXDOMAIN answer to `query` (RFC 1035 §4.1.1 RCODE 3): the query's id,
/// opcode and RD bit, QR and RA set, its first question, no answers, and an SOA record in
/// the authority section so the negative answer may be cached for
/// [`NXDOMAIN_CACHE_SECONDS`] (without one, RFC 2308 §5 says not to cache it, and clients
/// ask again at once). What a gateway sends back for a rejected query so the client fails at
/// once instead of retrying.
pub fn nxdomain_answer(query: &[u8], out: &mut Vec<u8>) -> Result<(), At<DnsError>> {
    negative_answer(query, false, out)
}

/// Writes into `out` an NXDOMAIN answer to take the place of `response` (an answer whose
/// CNAME chain a rule rejects), as [`nxdomain_answer`] writes it for the query: the same
/// id, opcode, RD bit and first question, no answers.
pub fn nxdomain_instead_of(response: &[u8], out: &mut Vec<u8>) -> Result<(), At<DnsError>> {
    negative_answer(response, true, out)
}

/// The NXDOMAIN for `bytes`, a query or (`is_response`) an answer.
fn negative_answer(bytes: &[u8], is_response: bool, out: &mut Vec<u8>) -> Result<(), At<DnsError>> {
    let message = Message::parse(bytes)?;
    if message.is_response() != is_response || message.question_count == 0 {
        return Err(DnsError::Truncated("question").into());
    }
    let mut reader = Reader::at(bytes, HEADER_LEN);
    skip_name(&mut reader)?;
    reader
        .skip(4)
        .ok_or_else(|| reader.fault(DnsError::Truncated("question")))?;
    let question = bytes
        .get(HEADER_LEN..reader.position())
        .ok_or(DnsError::Truncated("question"))?;
    // QR=1, opcode and RD from the message, RA=1, RCODE=3 (NXDOMAIN).
    let flags = 0x8000 | (message.flags & 0x7900) | 0x0080 | 3;
    out.clear();
    out.extend_from_slice(&message.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    // One question, no answers, one authority record, no additional records.
    out.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0]);
    out.extend_from_slice(question);
    // SOA owned by the question's name, with that name (a pointer to offset 12) as MNAME
    // and RNAME: serial 1, refresh, retry, expire, minimum.
    let ttl = NXDOMAIN_CACHE_SECONDS.to_be_bytes();
    out.extend_from_slice(&[0xc0, 0x0c, 0, 6, 0, 1]);
    out.extend_from_slice(&ttl);
    out.extend_from_slice(&[0, 24, 0xc0, 0x0c, 0xc0, 0x0c]);
    for value in [1u32, 3600, 600, 86_400, NXDOMAIN_CACHE_SECONDS] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    Ok(())
}

/// Takes one length-prefixed DNS message off the front of a TCP stream (RFC 1035 §4.2.2):
/// the message and the number of stream bytes it used.
pub fn split_tcp(stream: &[u8]) -> Scan<(&[u8], usize)> {
    let Some((length, rest)) = stream.split_first_chunk::<2>() else {
        return Scan::NeedMore;
    };
    let length = usize::from(u16::from_be_bytes(*length));
    match rest.get(..length) {
        Some(message) => Scan::Found((message, 2 + length)),
        None => Scan::NeedMore,
    }
}

/// Reads a possibly compressed name starting at the reader's position, leaving the reader
/// just after the name's in-place bytes.
fn read_name<'a>(bytes: &'a [u8], reader: &mut Reader<'a>) -> Result<Name, At<DnsError>> {
    let mut name = Name::empty();
    let mut cursor = *reader;
    let mut hops = 0;
    let mut followed_pointer = false;
    loop {
        let label_start = cursor.position();
        let length = cursor
            .u8()
            .ok_or_else(|| cursor.fault(DnsError::Truncated("name")))?;
        match length & 0xc0 {
            0x00 if length == 0 => break,
            0x00 => {
                let label = cursor
                    .take(usize::from(length))
                    .ok_or_else(|| cursor.fault(DnsError::Truncated("label")))?;
                if !name.push_label(label) {
                    return Err(At::new(DnsError::BadName, label_start));
                }
            }
            0xc0 => {
                let low = cursor
                    .u8()
                    .ok_or_else(|| cursor.fault(DnsError::Truncated("compression pointer")))?;
                let target = usize::from(u16::from_be_bytes([length & 0x3f, low]));
                if target >= label_start {
                    return Err(At::new(DnsError::ForwardPointer, label_start));
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(At::new(DnsError::TooManyPointers, label_start));
                }
                if !followed_pointer {
                    *reader = cursor;
                    followed_pointer = true;
                }
                cursor = Reader::at(bytes, target);
            }
            _ => return Err(At::new(DnsError::ReservedLabelType, label_start)),
        }
    }
    if !followed_pointer {
        *reader = cursor;
    }
    Ok(name)
}

/// Skips a name without decoding it (for questions before the answer section).
fn skip_name(reader: &mut Reader<'_>) -> Result<(), At<DnsError>> {
    let start = reader.offset();
    for _ in 0..=MAX_POINTER_HOPS {
        let label_start = reader.offset();
        let length = reader
            .u8()
            .ok_or_else(|| reader.fault(DnsError::Truncated("name")))?;
        match length & 0xc0 {
            0x00 if length == 0 => return Ok(()),
            0x00 => reader
                .skip(usize::from(length))
                .ok_or_else(|| reader.fault(DnsError::Truncated("label")))?,
            0xc0 => {
                return reader
                    .skip(1)
                    .ok_or_else(|| reader.fault(DnsError::Truncated("compression pointer")))
            }
            _ => return Err(At::new(DnsError::ReservedLabelType, label_start)),
        }
    }
    Err(At::new(DnsError::BadName, start))
}

/// An ECHConfigList with one ECHConfig (draft-ietf-tls-esni §4): X25519 key, HKDF-SHA256 and
/// AES-128-GCM, `public_name`, and a placeholder key (32 bytes of 0x33): what the demo lab's
/// DNS server announces and the tests feed to the parsers.
pub fn ech_config_list(config_id: u8, public_name: &str) -> Vec<u8> {
    let mut contents = vec![config_id, 0x00, 0x20, 0x00, 0x20];
    contents.extend_from_slice(&[0x33; 32]);
    contents.extend_from_slice(&[0x00, 0x04, 0x00, 0x01, 0x00, 0x01, 0x00]);
    contents.push(public_name.len() as u8);
    contents.extend_from_slice(public_name.as_bytes());
    contents.extend_from_slice(&[0x00, 0x00]);
    let mut config = vec![0xfe, 0x0d];
    config.extend_from_slice(&(contents.len() as u16).to_be_bytes());
    config.extend_from_slice(&contents);
    let mut list = (config.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&config);
    list
}

pub mod strip;

#[cfg(test)]
mod tests;
