//! Google QUIC's crypto handshake message CHLO (the QUIC Crypto design document, "Client
//! Hello"; Chromium `crypto_framer.cc`), sent by Q046 and Q050 clients in place of a TLS
//! ClientHello: the tag "CHLO", a little-endian count of entries and two bytes of padding,
//! then (tag, end offset) pairs in ascending order, then the values back to back. The
//! server name is the value of the tag `SNI\0`.
//!
//! Takes the reassembled crypto stream; answers Found with the name (or none), NeedMore
//! while the values are still cut, NotThis for bytes that are no CHLO, or a [`ChloError`].
//! Never panics, never allocates.

use super::reader::Reader;
use super::At;
use super::{Name, Scan};

/// Most entries a CHLO may have (Chromium's `kMaxEntries` is 128).
pub const MAX_CHLO_ENTRIES: u16 = 128;
/// Largest CHLO read; Chromium caps handshake messages at 16 KiB.
pub const MAX_CHLO_LEN: usize = 16 * 1024;

/// What is wrong with a CHLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChloError {
    #[error("more than {MAX_CHLO_ENTRIES} entries")]
    TooManyEntries,
    #[error("entry end offsets go backwards")]
    OffsetsBackwards,
    #[error("message longer than {MAX_CHLO_LEN} bytes")]
    TooLarge,
}

/// The server name a CHLO at the start of `stream` asks for, if any.
pub fn scan_chlo(stream: &[u8]) -> Result<Scan<Option<Name>>, At<ChloError>> {
    let mut reader = Reader::new(stream);
    let Some(tag) = reader.take(4) else {
        return Ok(if b"CHLO".starts_with(stream) {
            Scan::NeedMore
        } else {
            Scan::NotThis
        });
    };
    if tag != b"CHLO" {
        return Ok(Scan::NotThis);
    }
    let (Some(count_low), Some(count_high), Some(_padding)) =
        (reader.u8(), reader.u8(), reader.u16())
    else {
        return Ok(Scan::NeedMore);
    };
    let entries = u16::from_le_bytes([count_low, count_high]);
    if entries > MAX_CHLO_ENTRIES {
        return Err(ChloError::TooManyEntries.into());
    }
    let Some(index) = reader.take(usize::from(entries) * 8) else {
        return Ok(Scan::NeedMore);
    };
    let values = reader.rest();
    let mut index = Reader::new(index);
    let mut start = 0usize;
    let mut name = None;
    while let (Some(tag), Some(end)) = (index.take(4), index.take(4)) {
        let end = end
            .first_chunk::<4>()
            .map_or(0, |b| u32::from_le_bytes(*b) as usize);
        if end < start {
            return Err(ChloError::OffsetsBackwards.into());
        }
        if end > MAX_CHLO_LEN {
            return Err(ChloError::TooLarge.into());
        }
        if tag == b"SNI\0" {
            let Some(value) = values.get(start..end) else {
                return Ok(Scan::NeedMore);
            };
            name = Name::from_bytes(value);
        }
        start = end;
    }
    // Found only once every value is there, so a second SNI cannot follow unseen.
    if values.len() < start {
        return Ok(Scan::NeedMore);
    }
    Ok(Scan::Found(name))
}

/// Builds a CHLO with the given entries (tests, benchmarks, the capture generator); tags
/// must be given in ascending order as clients send them.
pub fn build_chlo(entries: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut message = b"CHLO".to_vec();
    message.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    message.extend_from_slice(&[0, 0]);
    let mut end = 0u32;
    for (tag, value) in entries {
        end += value.len() as u32;
        message.extend_from_slice(*tag);
        message.extend_from_slice(&end.to_le_bytes());
    }
    for (_, value) in entries {
        message.extend_from_slice(value);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chlo(sni: &[u8]) -> Vec<u8> {
        build_chlo(&[
            (b"PAD\0", &[0x2d; 40]),
            (b"SNI\0", sni),
            (b"VER\0", b"Q050"),
            (b"UAID", b"Chrome/80.0.3987.122"),
        ])
    }

    fn name_of(scan: Result<Scan<Option<Name>>, At<ChloError>>) -> Option<String> {
        match scan {
            Ok(Scan::Found(Some(name))) => Some(name.as_str().to_string()),
            _ => None,
        }
    }

    #[test]
    fn finds_the_server_name() {
        let message = chlo(b"Settings-Win.Data.Microsoft.com");
        assert_eq!(
            name_of(scan_chlo(&message)).as_deref(),
            Some("settings-win.data.microsoft.com")
        );
    }

    #[test]
    fn a_chlo_without_sni_is_found_without_a_name() {
        let message = build_chlo(&[(b"VER\0", b"Q046")]);
        assert_eq!(scan_chlo(&message), Ok(Scan::Found(None)));
    }

    #[test]
    fn every_prefix_needs_more_and_the_whole_is_found() {
        let message = chlo(b"www.example.org");
        for len in 0..message.len() {
            assert_eq!(scan_chlo(&message[..len]), Ok(Scan::NeedMore), "{len}");
        }
        assert!(name_of(scan_chlo(&message)).is_some());
    }

    #[test]
    fn other_bytes_are_not_a_chlo() {
        assert_eq!(scan_chlo(b"\x16\x03\x01\x02\x00"), Ok(Scan::NotThis));
        assert_eq!(scan_chlo(b"SHLO\0\0\0\0"), Ok(Scan::NotThis));
    }

    #[test]
    fn rejects_offsets_that_go_backwards() {
        let mut message = chlo(b"a.example");
        // The second entry's end offset (bytes 20..24) made smaller than the first's.
        message[20..24].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(scan_chlo(&message), Err(ChloError::OffsetsBackwards.into()));
    }

    #[test]
    fn rejects_more_entries_than_the_cap() {
        let mut message = b"CHLO".to_vec();
        message.extend_from_slice(&(MAX_CHLO_ENTRIES + 1).to_le_bytes());
        message.extend_from_slice(&[0, 0]);
        assert_eq!(scan_chlo(&message), Err(ChloError::TooManyEntries.into()));
    }

    #[test]
    fn rejects_values_past_the_size_cap() {
        let mut message = b"CHLO\x01\x00\x00\x00SNI\0".to_vec();
        message.extend_from_slice(&((MAX_CHLO_LEN + 1) as u32).to_le_bytes());
        assert_eq!(scan_chlo(&message), Err(ChloError::TooLarge.into()));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = scan_chlo(&bytes);
            let mut prefixed = b"CHLO".to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = scan_chlo(&prefixed);
        }
    }
}
