//! TLS ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) and its server_name extension
//! (RFC 6066 §3), read from the start of a client's TCP stream.
//!
//! The ClientHello may span several TLS records and several TCP segments (post-quantum
//! key shares make it ~1,800 bytes); [`scan_client_hello`] takes the contiguous stream bytes
//! seen so far and answers Found, NotThis (not TLS), NeedMore, or a [`TlsError`]. When the
//! message sits in one record it is parsed in place; otherwise the record payloads are joined
//! in a caller-owned scratch buffer, capped at [`MAX_CLIENT_HELLO_LEN`]. Never panics.

use super::reader::Reader;
use super::At;
use super::{Name, Scan};

/// Largest ClientHello accepted. Real ones are 200–2,000 bytes; 16 KiB leaves room for
/// large key shares and padding while bounding the bytes buffered per flow.
pub const MAX_CLIENT_HELLO_LEN: usize = 16 * 1024;
/// Largest TLSPlaintext fragment is 2^14 (RFC 8446 §5.1); anything longer is not TLS.
pub const MAX_RECORD_LEN: usize = 1 << 14;

const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
/// encrypted_client_hello (draft-ietf-tls-esni, IANA codepoint 0xfe0d).
const EXTENSION_ECH: u16 = 0xfe0d;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// What telestrip reads from a ClientHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The first host_name of the server_name list (what OpenSSL, BoringSSL and rustls use).
    pub sni: Option<Name>,
    /// host_name entries in the server_name list; more than one is an evasion attempt.
    pub sni_count: u8,
    /// The last host_name that differs from the first, when the list has several: servers
    /// take the first (OpenSSL, BoringSSL, rustls) or refuse the list (Go), so a filter
    /// judges both ends.
    pub other_sni: Option<Name>,
    /// The encrypted_client_hello extension is present (real or GREASE ECH).
    pub ech: bool,
    /// config_id of an outer ECH extension: real ECH uses one from the server's HTTPS
    /// record, GREASE ECH a random one.
    pub ech_config_id: Option<u8>,
    /// Number of TLS records the message was spread over (0 in QUIC, which has none).
    pub records: u16,
}

/// What is wrong with a ClientHello. Small and `Copy`: one counter per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("record longer than 2^14 bytes")]
    RecordTooLong,
    #[error("empty handshake record")]
    EmptyRecord,
    #[error("non-handshake record before the ClientHello was complete")]
    InterleavedRecord,
    #[error("ClientHello longer than {MAX_CLIENT_HELLO_LEN} bytes")]
    TooLarge,
    #[error("ClientHello ends inside {0}")]
    Truncated(&'static str),
    #[error("server_name extension appears twice")]
    DuplicateServerName,
    #[error("server_name holds bytes that are not a host name")]
    BadServerName,
}

/// Scans the first bytes a client sent on a TCP connection for a ClientHello.
/// `scratch` is reused between calls; it is cleared here.
pub fn scan_client_hello(
    stream: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<Scan<ClientHello>, At<TlsError>> {
    if !looks_like_handshake_record(stream) {
        return Ok(Scan::NotThis);
    }
    // Fast path: the whole message in the first record, parsed in place.
    if let Some(fragment) = record_fragment(stream) {
        if let Some(message) = complete_message(fragment)? {
            return parse_message(message, 1);
        }
    }
    scratch.clear();
    let mut reader = Reader::new(stream);
    let mut records: u16 = 0;
    loop {
        let record_start = reader.offset();
        let Some(header) = reader.take(5) else {
            return need_more(stream, scratch);
        };
        let at_record = |error| At::new(error, record_start);
        let (content_type, length) = match header {
            [t, _, _, hi, lo] => (*t, usize::from(u16::from_be_bytes([*hi, *lo]))),
            _ => return Ok(Scan::NeedMore),
        };
        if content_type != CONTENT_TYPE_HANDSHAKE {
            return Err(at_record(TlsError::InterleavedRecord));
        }
        if length > MAX_RECORD_LEN {
            return Err(at_record(TlsError::RecordTooLong));
        }
        if length == 0 {
            return Err(at_record(TlsError::EmptyRecord));
        }
        records = records.saturating_add(1);
        let available = length.min(reader.remaining());
        let fragment = reader.take(available).unwrap_or(&[]);
        if scratch.len() + fragment.len() > MAX_CLIENT_HELLO_LEN + 4 {
            return Err(at_record(TlsError::TooLarge));
        }
        scratch.extend_from_slice(fragment);
        if let Some(message) = complete_message(scratch)? {
            let message_len = message.len();
            return parse_message(scratch.get(..message_len).unwrap_or(&[]), records);
        }
        if available < length {
            return need_more(stream, scratch);
        }
    }
}

/// Scans bare handshake messages (no record layer), as QUIC carries them in CRYPTO frames
/// (RFC 9001 §4): the ClientHello must be the first message.
pub fn scan_handshake(bytes: &[u8]) -> Result<Scan<ClientHello>, At<TlsError>> {
    match bytes.first() {
        None => Ok(Scan::NeedMore),
        Some(&kind) if kind != HANDSHAKE_CLIENT_HELLO => Ok(Scan::NotThis),
        Some(_) => match complete_message(bytes)? {
            Some(message) => parse_message(message, 0),
            None => Ok(Scan::NeedMore),
        },
    }
}

/// True when the bytes could start a TLS handshake record: content type 22, version 3.x.
/// Decides from as few bytes as are present, so one byte can already say NotThis.
fn looks_like_handshake_record(stream: &[u8]) -> bool {
    match stream {
        [] => true,
        [t] => *t == CONTENT_TYPE_HANDSHAKE,
        [t, major] => *t == CONTENT_TYPE_HANDSHAKE && *major == 3,
        [t, major, minor, ..] => *t == CONTENT_TYPE_HANDSHAKE && *major == 3 && *minor <= 4,
    }
}

/// The first record's fragment, if it is complete.
fn record_fragment(stream: &[u8]) -> Option<&[u8]> {
    let mut reader = Reader::new(stream);
    reader.skip(3)?;
    let length = usize::from(reader.u16()?);
    reader.take(length)
}

/// The handshake message at the start of `bytes`, if all of it is there.
/// `NotThis` for other handshake types is reported as an error-free `None` by the caller.
fn complete_message(bytes: &[u8]) -> Result<Option<&[u8]>, At<TlsError>> {
    let mut reader = Reader::new(bytes);
    let (Some(_), Some(length)) = (reader.u8(), reader.u24()) else {
        return Ok(None);
    };
    let length = length as usize;
    if length > MAX_CLIENT_HELLO_LEN {
        return Err(TlsError::TooLarge.into());
    }
    Ok(bytes.get(..4 + length))
}

fn need_more(stream: &[u8], joined: &[u8]) -> Result<Scan<ClientHello>, At<TlsError>> {
    // Once the handshake type is known, a server-first or non-ClientHello stream is not ours.
    match joined.first().or_else(|| stream.get(5)) {
        Some(&t) if t != HANDSHAKE_CLIENT_HELLO => Ok(Scan::NotThis),
        _ => Ok(Scan::NeedMore),
    }
}

fn parse_message(message: &[u8], records: u16) -> Result<Scan<ClientHello>, At<TlsError>> {
    let mut reader = Reader::new(message);
    if reader.u8() != Some(HANDSHAKE_CLIENT_HELLO) {
        return Ok(Scan::NotThis);
    }
    let _length = reader.u24();
    parse_client_hello_body(reader, records).map(Scan::Found)
}

/// RFC 8446 §4.1.2: legacy_version, random, legacy_session_id, cipher_suites,
/// legacy_compression_methods, then optional extensions (absent in some TLS 1.0 clients).
fn parse_client_hello_body(
    mut reader: Reader<'_>,
    records: u16,
) -> Result<ClientHello, At<TlsError>> {
    let mut hello = ClientHello {
        sni: None,
        sni_count: 0,
        other_sni: None,
        ech: false,
        ech_config_id: None,
        records,
    };
    reader
        .skip(2 + 32)
        .ok_or_else(|| reader.fault(TlsError::Truncated("random")))?;
    reader
        .vec8()
        .ok_or_else(|| reader.fault(TlsError::Truncated("session id")))?;
    reader
        .vec16()
        .ok_or_else(|| reader.fault(TlsError::Truncated("cipher suites")))?;
    reader
        .vec8()
        .ok_or_else(|| reader.fault(TlsError::Truncated("compression methods")))?;
    if reader.remaining() == 0 {
        return Ok(hello);
    }
    let mut extensions = reader
        .vec16()
        .ok_or_else(|| reader.fault(TlsError::Truncated("extensions")))?;
    let mut seen_server_name = false;
    while extensions.remaining() > 0 {
        let kind = extensions
            .u16()
            .ok_or_else(|| extensions.fault(TlsError::Truncated("extension")))?;
        let data = extensions
            .vec16()
            .ok_or_else(|| extensions.fault(TlsError::Truncated("extension")))?;
        match kind {
            EXTENSION_SERVER_NAME => {
                if seen_server_name {
                    return Err(TlsError::DuplicateServerName.into());
                }
                seen_server_name = true;
                read_server_name(data, &mut hello)?;
            }
            EXTENSION_ECH => {
                hello.ech = true;
                // ECHClientHello (draft-ietf-tls-esni §5): type 0 (outer), cipher suite, id.
                let mut ech = data;
                if ech.u8() == Some(0) && ech.skip(4).is_some() {
                    hello.ech_config_id = ech.u8();
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

fn read_server_name(mut data: Reader<'_>, hello: &mut ClientHello) -> Result<(), At<TlsError>> {
    let mut list = data
        .vec16()
        .ok_or_else(|| data.fault(TlsError::Truncated("server_name list")))?;
    while list.remaining() > 0 {
        let name_type = list
            .u8()
            .ok_or_else(|| list.fault(TlsError::Truncated("server_name entry")))?;
        let name = list
            .vec16()
            .and_then(|mut r| r.take(r.remaining()))
            .ok_or(TlsError::Truncated("server_name entry"))?;
        if name_type != NAME_TYPE_HOST_NAME {
            continue;
        }
        hello.sni_count = hello.sni_count.saturating_add(1);
        let name = Name::from_bytes(name).ok_or(TlsError::BadServerName)?;
        match hello.sni {
            None => hello.sni = Some(name),
            Some(first) if first != name => hello.other_sni = Some(name),
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
