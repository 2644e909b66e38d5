//! QUIC Initial packets (RFC 9000 §17.2.2), versions 1 and 2 (RFC 9369), the IETF drafts
//! older clients still send (22-34) and Google QUIC (Q046, Q050, T050, T051): the client's
//! first flight, protected with keys anyone can derive from the packet's Destination
//! Connection ID (RFC 9001 §5.2; each draft and Google version has its own published
//! salt), or plaintext (Q046). [`read_client_initials`] removes header protection,
//! decrypts every Initial packet coalesced in a datagram and hands over the CRYPTO frames
//! (offset and bytes); the caller reassembles them, in any order and across datagrams,
//! into the TLS ClientHello ([`super::tls::scan_handshake`]) or, for Q046 and Q050, the
//! Google handshake message CHLO ([`super::gquic::scan_chlo`]); [`hello_kind`] says which.
//!
//! The cryptography is `ring`'s (HKDF, AES-128-GCM, AES header protection); this module
//! only lays out the labels and bytes. Never panics; every length is checked.

use ring::aead::quic::{HeaderProtectionKey, AES_128};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::hkdf::{KeyType, Prk, Salt, HKDF_SHA256};

use super::reader::Reader;
use super::At;

pub const VERSION_1: u32 = 0x0000_0001;
pub const VERSION_2: u32 = 0x6b33_43cf;
/// draft-ietf-quic-transport-29, the draft most pre-RFC clients still send.
pub const DRAFT_29: u32 = 0xff00_001d;
/// Google QUIC versions ("Q046" etc. in ASCII).
pub const Q046: u32 = 0x5130_3436;
pub const Q050: u32 = 0x5130_3530;
pub const T050: u32 = 0x5430_3530;
pub const T051: u32 = 0x5430_3531;
/// Connection IDs are at most 20 bytes in versions 1 and 2 (RFC 9000 §17.2).
pub const MAX_CID_LEN: usize = 20;
/// Clients pad datagrams with Initial packets to at least 1,200 bytes (RFC 9000 §14.1);
/// smaller ones are not a client's first flight.
pub const MIN_INITIAL_DATAGRAM: usize = 1200;

const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// draft-ietf-quic-tls-22 §5.2 (also Facebook's mvfst draft-22 version).
const SALT_DRAFT_22: [u8; 20] = [
    0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd,
    0x7a, 0x02, 0x64, 0x4a,
];
/// draft-ietf-quic-tls-23 to -28 §5.2.
const SALT_DRAFT_23: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65,
    0xbe, 0xf9, 0xf5, 0x02,
];
/// draft-ietf-quic-tls-29 to -32 §5.2.
const SALT_DRAFT_29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];
/// Google QUIC's Initial salts (Chromium `quic_crypto_stream` / `GetSaltForVersion`, as
/// Wireshark and nDPI use them).
const SALT_Q050: [u8; 20] = [
    0x50, 0x45, 0x74, 0xef, 0xd0, 0x66, 0xfe, 0x2f, 0x9d, 0x94, 0x5c, 0xfc, 0xdb, 0xd3, 0xa7, 0xf0,
    0xd3, 0xb5, 0x6b, 0x45,
];
const SALT_T050: [u8; 20] = [
    0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80, 0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c,
    0x60, 0x48, 0x83, 0x10,
];
const SALT_T051: [u8; 20] = [
    0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc,
    0xda, 0x6e, 0x03, 0x3d,
];

/// What a client's first flight carries in its CRYPTO data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloKind {
    /// A TLS 1.3 ClientHello (IETF versions, T050, T051).
    Tls,
    /// A Google QUIC crypto handshake message, CHLO (Q046, Q050).
    Chlo,
}

/// How one version protects and frames its Initial packets.
struct VersionRules {
    salt: &'static [u8; 20],
    /// Version 2 renamed the HKDF labels and reordered the packet types.
    v2: bool,
    /// Frame type of CRYPTO data: 0x06 in IETF QUIC, 0x08 in Google's Q050/T05x.
    crypto_frame: u64,
    hello: HelloKind,
}

fn version_rules(version: u32) -> Option<VersionRules> {
    let ietf = |salt| VersionRules {
        salt,
        v2: false,
        crypto_frame: 0x06,
        hello: HelloKind::Tls,
    };
    let google = |salt, hello| VersionRules {
        salt,
        v2: false,
        crypto_frame: 0x08,
        hello,
    };
    Some(match version {
        VERSION_1 | 0xff00_0021 | 0xff00_0022 => ietf(&SALT_V1),
        VERSION_2 => VersionRules {
            v2: true,
            ..ietf(&SALT_V2)
        },
        0xff00_001d..=0xff00_0020 => ietf(&SALT_DRAFT_29),
        0xff00_0017..=0xff00_001c | 0xface_b002 | 0xface_b00e => ietf(&SALT_DRAFT_23),
        0xff00_0016 | 0xface_b001 => ietf(&SALT_DRAFT_22),
        Q050 => google(&SALT_Q050, HelloKind::Chlo),
        T050 => google(&SALT_T050, HelloKind::Tls),
        T051 => google(&SALT_T051, HelloKind::Tls),
        _ => return None,
    })
}

/// What the CRYPTO data of a client Initial of `version` holds; `None` for versions
/// telestrip does not read.
pub fn hello_kind(version: u32) -> Option<HelloKind> {
    if version == Q046 {
        return Some(HelloKind::Chlo);
    }
    version_rules(version).map(|rules| rules.hello)
}

/// The version field of a long-header packet at the start of `datagram`, known or not.
pub fn long_header_version(datagram: &[u8]) -> Option<u32> {
    let mut reader = Reader::new(datagram);
    let first = reader.u8()?;
    (first & 0x80 != 0).then(|| reader.u32()).flatten()
}

const TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;

/// What is wrong with a datagram that looked like a client's QUIC Initial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    #[error("packet ends inside {0}")]
    Truncated(&'static str),
    #[error("connection ID longer than 20 bytes")]
    ConnectionIdTooLong,
    #[error("Initial packet does not decrypt (not a client Initial, or altered)")]
    Decrypt,
    #[error("frame not allowed or malformed in an Initial packet")]
    BadFrame,
}

/// The version of a client's Initial packet at the start of `datagram`, or `None` when the
/// datagram is not one (short header, other packet type, unknown version, too small).
pub fn client_initial_version(datagram: &[u8]) -> Option<u32> {
    if datagram.len() < MIN_INITIAL_DATAGRAM {
        return None;
    }
    let mut reader = Reader::new(datagram);
    let first = reader.u8()?;
    let version = reader.u32()?;
    if version == Q046 {
        return (first & 0x80 != 0 && q046_header(datagram).is_some()).then_some(version);
    }
    (first & 0x80 != 0 && packet_type(first, version) == Some(PacketType::Initial))
        .then_some(version)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// The long-header packet type; the bits mean different types in version 2.
fn packet_type(first: u8, version: u32) -> Option<PacketType> {
    let bits = (first >> 4) & 0x3;
    let types = if version_rules(version)?.v2 {
        [
            PacketType::Retry,
            PacketType::Initial,
            PacketType::ZeroRtt,
            PacketType::Handshake,
        ]
    } else {
        [
            PacketType::Initial,
            PacketType::ZeroRtt,
            PacketType::Handshake,
            PacketType::Retry,
        ]
    };
    types.get(usize::from(bits)).copied()
}

/// A variable-length integer (RFC 9000 §16).
fn varint(reader: &mut Reader<'_>) -> Option<u64> {
    let first = reader.u8()?;
    let extra = (1usize << (first >> 6)) - 1;
    let mut value = u64::from(first & 0x3f);
    for _ in 0..extra {
        value = (value << 8) | u64::from(reader.u8()?);
    }
    Some(value)
}

/// HKDF-Expand-Label output length for ring.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", len) of TLS 1.3 (RFC 8446 §7.1).
fn expand_label(secret: &Prk, label: &[u8], out: &mut [u8]) -> Result<(), At<QuicError>> {
    let length = u16::try_from(out.len()).map_err(|_| QuicError::Decrypt)?;
    let full_len = u8::try_from(6 + label.len()).map_err(|_| QuicError::Decrypt)?;
    let length_bytes = length.to_be_bytes();
    let info: [&[u8]; 5] = [&length_bytes, &[full_len], b"tls13 ", label, &[0]];
    secret
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| QuicError::Decrypt.into())
}

/// The client's Initial keys for one Destination Connection ID.
pub struct InitialKeys {
    aead: LessSafeKey,
    iv: [u8; 12],
    header: HeaderProtectionKey,
}

/// Raw key material, exposed for the RFC test vectors.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyMaterial {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

/// RFC 9001 §5.2 (labels "quic key", "quic iv", "quic hp", which the drafts from 23 on
/// and Google's TLS-style versions use too) and RFC 9369 §3.3.
pub fn client_key_material(version: u32, dcid: &[u8]) -> Result<KeyMaterial, At<QuicError>> {
    let rules = version_rules(version).ok_or(QuicError::Decrypt)?;
    let labels: [&[u8]; 3] = if rules.v2 {
        [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"]
    } else {
        [b"quic key", b"quic iv", b"quic hp"]
    };
    let salt: &[u8] = rules.salt;
    let initial = Salt::new(HKDF_SHA256, salt).extract(dcid);
    let mut client_secret = [0u8; 32];
    expand_label(&initial, b"client in", &mut client_secret)?;
    let client = Prk::new_less_safe(HKDF_SHA256, &client_secret);
    let mut material = KeyMaterial {
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    let [key_label, iv_label, hp_label] = labels;
    expand_label(&client, key_label, &mut material.key)?;
    expand_label(&client, iv_label, &mut material.iv)?;
    expand_label(&client, hp_label, &mut material.hp)?;
    Ok(material)
}

impl InitialKeys {
    pub fn client(version: u32, dcid: &[u8]) -> Result<Self, At<QuicError>> {
        let material = client_key_material(version, dcid)?;
        let aead = UnboundKey::new(&AES_128_GCM, &material.key).map_err(|_| QuicError::Decrypt)?;
        let header =
            HeaderProtectionKey::new(&AES_128, &material.hp).map_err(|_| QuicError::Decrypt)?;
        Ok(Self {
            aead: LessSafeKey::new(aead),
            iv: material.iv,
            header,
        })
    }
}

/// What reading client Initials reuses from one datagram to the next: the plaintext buffer,
/// and the keys of the last connection ID. A hello too large for one datagram (a
/// post-quantum key share makes it about 1,800 bytes) comes in two or more Initials to the
/// same connection ID, and deriving its keys (HKDF, AES key schedules) costs more than
/// decrypting a packet.
#[derive(Default)]
pub struct InitialScratch {
    plaintext: Vec<u8>,
    last_keys: Option<LastKeys>,
}

struct LastKeys {
    version: u32,
    dcid: [u8; MAX_CID_LEN],
    dcid_len: usize,
    keys: InitialKeys,
}

impl LastKeys {
    /// The client keys of `dcid` in `version`, derived again only when either changed.
    fn of<'k>(
        last: &'k mut Option<LastKeys>,
        version: u32,
        dcid: &[u8],
    ) -> Result<&'k InitialKeys, At<QuicError>> {
        let same = last.as_ref().is_some_and(|last| {
            last.version == version && last.dcid.get(..last.dcid_len) == Some(dcid)
        });
        if !same {
            let mut stored = [0u8; MAX_CID_LEN];
            stored
                .get_mut(..dcid.len())
                .ok_or(QuicError::ConnectionIdTooLong)?
                .copy_from_slice(dcid);
            // The old keys were for another ID: a failed derivation leaves none.
            *last = None;
            let keys = InitialKeys::client(version, dcid)?;
            *last = Some(LastKeys {
                version,
                dcid: stored,
                dcid_len: dcid.len(),
                keys,
            });
        }
        match last {
            Some(last) => Ok(&last.keys),
            None => Err(QuicError::Decrypt.into()),
        }
    }
}

/// What one datagram held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    /// Client Initial packets decrypted.
    pub initials: u16,
    /// CRYPTO frames handed over.
    pub crypto_frames: u16,
}

/// Decrypts the client Initial packets coalesced in `datagram` and calls `crypto(offset,
/// bytes)` for each CRYPTO frame, in packet order. Other long-header packets (0-RTT,
/// Handshake) are skipped; a short-header packet ends the datagram. `scratch` holds one
/// packet's plaintext at a time and the last connection ID's keys.
pub fn read_client_initials(
    datagram: &[u8],
    scratch: &mut InitialScratch,
    mut crypto: impl FnMut(u64, &[u8]),
) -> Result<Datagram, At<QuicError>> {
    let mut seen = Datagram::default();
    if long_header_version(datagram) == Some(Q046) {
        return read_q046(datagram, &mut crypto);
    }
    let mut rest = datagram;
    while let Some(&first) = rest.first() {
        if first & 0x80 == 0 {
            break;
        }
        let (packet_len, initial) = packet_bounds(rest)?;
        let packet = rest
            .get(..packet_len)
            .ok_or(QuicError::Truncated("packet"))?;
        if let Some(initial) = initial {
            decrypt_initial(packet, &initial, scratch)?;
            seen.initials = seen.initials.saturating_add(1);
            let crypto_frame = version_rules(initial.version).map_or(0x06, |r| r.crypto_frame);
            seen.crypto_frames = seen.crypto_frames.saturating_add(read_frames(
                &scratch.plaintext,
                crypto_frame,
                &mut crypto,
            )?);
        }
        rest = rest.get(packet_len..).unwrap_or(&[]);
    }
    Ok(seen)
}

/// Where an Initial's packet number starts, and what its keys derive from.
struct InitialHeader {
    version: u32,
    dcid_start: usize,
    dcid_len: usize,
    pn_offset: usize,
}

/// The length of the long-header packet at the start of `bytes`, and for an Initial its
/// layout. Retry and Version Negotiation fill the rest of the datagram.
fn packet_bounds(bytes: &[u8]) -> Result<(usize, Option<InitialHeader>), At<QuicError>> {
    let mut reader = Reader::new(bytes);
    let first = reader
        .u8()
        .ok_or_else(|| reader.fault(QuicError::Truncated("header")))?;
    let version = reader
        .u32()
        .ok_or_else(|| reader.fault(QuicError::Truncated("version")))?;
    let Some(kind) = packet_type(first, version) else {
        // Version Negotiation (version 0) or an unknown version: nothing to read.
        return Ok((bytes.len(), None));
    };
    let dcid_len = usize::from(
        reader
            .u8()
            .ok_or_else(|| reader.fault(QuicError::Truncated("connection ID")))?,
    );
    if dcid_len > MAX_CID_LEN {
        return Err(At::new(QuicError::ConnectionIdTooLong, 5));
    }
    let dcid_start = reader.position();
    reader
        .skip(dcid_len)
        .ok_or_else(|| reader.fault(QuicError::Truncated("connection ID")))?;
    let scid_len = usize::from(
        reader
            .u8()
            .ok_or_else(|| reader.fault(QuicError::Truncated("connection ID")))?,
    );
    if scid_len > MAX_CID_LEN {
        return Err(At::new(
            QuicError::ConnectionIdTooLong,
            reader.offset().saturating_sub(1),
        ));
    }
    reader
        .skip(scid_len)
        .ok_or_else(|| reader.fault(QuicError::Truncated("connection ID")))?;
    if kind == PacketType::Retry {
        return Ok((bytes.len(), None));
    }
    if kind == PacketType::Initial {
        let token_len =
            varint(&mut reader).ok_or_else(|| reader.fault(QuicError::Truncated("token")))?;
        reader
            .skip(usize::try_from(token_len).map_err(|_| QuicError::Truncated("token"))?)
            .ok_or(QuicError::Truncated("token"))?;
    }
    let length = varint(&mut reader).ok_or_else(|| reader.fault(QuicError::Truncated("length")))?;
    let pn_offset = reader.position();
    let total = usize::try_from(length)
        .ok()
        .and_then(|l| pn_offset.checked_add(l))
        .filter(|&end| end <= bytes.len())
        .ok_or(QuicError::Truncated("payload"))?;
    let initial = (kind == PacketType::Initial).then_some(InitialHeader {
        version,
        dcid_start,
        dcid_len,
        pn_offset,
    });
    Ok((total, initial))
}

/// Removes header protection and decrypts one Initial packet into the scratch's plaintext.
fn decrypt_initial(
    packet: &[u8],
    header: &InitialHeader,
    scratch: &mut InitialScratch,
) -> Result<(), At<QuicError>> {
    let dcid = packet
        .get(header.dcid_start..header.dcid_start + header.dcid_len)
        .ok_or(QuicError::Truncated("connection ID"))?;
    let keys = LastKeys::of(&mut scratch.last_keys, header.version, dcid)?;
    let plaintext = &mut scratch.plaintext;
    let sample_start = header.pn_offset + 4;
    let sample = packet
        .get(sample_start..sample_start + SAMPLE_LEN)
        .ok_or(QuicError::Truncated("header protection sample"))?;
    let mask = keys
        .header
        .new_mask(sample)
        .map_err(|_| QuicError::Decrypt)?;
    let [mask0, pn_mask @ ..] = mask;
    let first = packet.first().ok_or(QuicError::Truncated("header"))? ^ (mask0 & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let header_len = header.pn_offset + pn_len;
    if packet.len() < header_len + TAG_LEN {
        return Err(QuicError::Truncated("payload").into());
    }
    plaintext.clear();
    plaintext.extend_from_slice(packet);
    let mut packet_number = 0u64;
    if let Some(b) = plaintext.first_mut() {
        *b = first;
    }
    for (i, m) in pn_mask.iter().take(pn_len).enumerate() {
        if let Some(b) = plaintext.get_mut(header.pn_offset + i) {
            *b ^= m;
            packet_number = (packet_number << 8) | u64::from(*b);
        }
    }
    let mut nonce = keys.iv;
    for (n, p) in nonce.iter_mut().skip(4).zip(packet_number.to_be_bytes()) {
        *n ^= p;
    }
    let (aad, payload) = plaintext
        .split_at_mut_checked(header_len)
        .ok_or(QuicError::Truncated("payload"))?;
    let opened = keys
        .aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&*aad),
            payload,
        )
        .map_err(|_| QuicError::Decrypt)?
        .len();
    plaintext.copy_within(header_len..header_len + opened, 0);
    plaintext.truncate(opened);
    Ok(())
}

/// Builds a protected client Initial packet (the inverse of [`read_client_initials`]), for
/// tests, benchmarks and the capture generator: `frames` is the plaintext payload, padded
/// with PADDING frames so that the packet is `pad_to` bytes long at least.
pub fn protect_client_initial(
    version: u32,
    dcid: &[u8],
    scid: &[u8],
    packet_number: u32,
    frames: &[u8],
    pad_to: usize,
) -> Result<Vec<u8>, At<QuicError>> {
    let keys = InitialKeys::client(version, dcid)?;
    let type_bits: u8 = if version == VERSION_2 { 0b01 } else { 0b00 };
    // 4-byte packet numbers, 2-byte length field.
    let header_len = 1 + 4 + 1 + dcid.len() + 1 + scid.len() + 1 + 2 + 4;
    let mut payload = frames.to_vec();
    let wanted = pad_to.saturating_sub(header_len + TAG_LEN);
    if payload.len() < wanted {
        payload.resize(wanted, 0);
    }
    let length = payload.len() + TAG_LEN + 4;
    if length > 0x3fff || dcid.len() > MAX_CID_LEN || scid.len() > MAX_CID_LEN {
        return Err(QuicError::Truncated("payload").into());
    }
    let mut packet = Vec::with_capacity(header_len + length);
    packet.push(0xc0 | (type_bits << 4) | 0x03);
    packet.extend_from_slice(&version.to_be_bytes());
    packet.push(dcid.len() as u8);
    packet.extend_from_slice(dcid);
    packet.push(scid.len() as u8);
    packet.extend_from_slice(scid);
    packet.push(0); // no token
    packet.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = packet.len();
    packet.extend_from_slice(&packet_number.to_be_bytes());
    let mut nonce = keys.iv;
    for (n, p) in nonce
        .iter_mut()
        .skip(4)
        .zip(u64::from(packet_number).to_be_bytes())
    {
        *n ^= p;
    }
    let tag = keys
        .aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&packet[..]),
            &mut payload,
        )
        .map_err(|_| QuicError::Decrypt)?;
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(tag.as_ref());
    let sample = packet
        .get(pn_offset + 4..pn_offset + 4 + SAMPLE_LEN)
        .ok_or(QuicError::Truncated("header protection sample"))?;
    let [mask0, pn_mask @ ..] = keys
        .header
        .new_mask(sample)
        .map_err(|_| QuicError::Decrypt)?;
    if let Some(first) = packet.first_mut() {
        *first ^= mask0 & 0x0f;
    }
    for (i, m) in pn_mask.iter().enumerate() {
        if let Some(b) = packet.get_mut(pn_offset + i) {
            *b ^= m;
        }
    }
    Ok(packet)
}

/// A CRYPTO frame carrying `data` at `offset`.
pub fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x06];
    put_varint(&mut frame, offset);
    put_varint(&mut frame, data.len() as u64);
    frame.extend_from_slice(data);
    frame
}

fn put_varint(out: &mut Vec<u8>, value: u64) {
    if value < 1 << 6 {
        out.push(value as u8);
    } else if value < 1 << 14 {
        out.extend_from_slice(&(0x4000 | value as u16).to_be_bytes());
    } else if value < 1 << 30 {
        out.extend_from_slice(&(0x8000_0000 | value as u32).to_be_bytes());
    } else {
        out.extend_from_slice(&(0xc000_0000_0000_0000 | value).to_be_bytes());
    }
}

/// Walks the frames of a decrypted Initial; returns how many CRYPTO frames (of type
/// `crypto_frame`) it handed over. Google's Q050/T05x frames other than PADDING and
/// CRYPTO have encodings of their own: reading stops at the first of them.
fn read_frames(
    plaintext: &[u8],
    crypto_frame: u64,
    crypto: &mut impl FnMut(u64, &[u8]),
) -> Result<u16, At<QuicError>> {
    let mut reader = Reader::new(plaintext);
    let mut frames = 0u16;
    while reader.remaining() > 0 {
        let kind = varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
        if crypto_frame != 0x06 {
            match kind {
                0x00 => continue,
                kind if kind == crypto_frame => {
                    let offset =
                        varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                    let len =
                        varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                    let data = usize::try_from(len)
                        .ok()
                        .and_then(|len| reader.take(len))
                        .ok_or(QuicError::BadFrame)?;
                    crypto(offset, data);
                    frames = frames.saturating_add(1);
                    continue;
                }
                _ => break,
            }
        }
        match kind {
            // PADDING, PING
            0x00 | 0x01 => {}
            // ACK, ACK with ECN counts
            0x02 | 0x03 => {
                let _largest =
                    varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                let _delay =
                    varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                let ranges =
                    varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                let _first =
                    varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                for _ in 0..ranges.min(reader.remaining() as u64) {
                    varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                    varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                    }
                }
            }
            // CRYPTO
            0x06 => {
                let offset =
                    varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                let len = varint(&mut reader).ok_or_else(|| reader.fault(QuicError::BadFrame))?;
                let data = usize::try_from(len)
                    .ok()
                    .and_then(|len| reader.take(len))
                    .ok_or(QuicError::BadFrame)?;
                crypto(offset, data);
                frames = frames.saturating_add(1);
            }
            // CONNECTION_CLOSE: the client gives up; nothing more to read.
            0x1c => break,
            _ => return Err(QuicError::BadFrame.into()),
        }
    }
    Ok(frames)
}

/// A Q046 client Initial's layout: where its frames start. Q046 keeps IETF's long header
/// form but packs both connection ID lengths into one byte (each nibble + 3), sends an
/// 8-byte Destination CID and no Source CID, and puts a 12-byte message hash (FNV-1a,
/// not a secret) before its plaintext frames.
fn q046_header(datagram: &[u8]) -> Option<usize> {
    let mut reader = Reader::new(datagram);
    let first = reader.u8()?;
    let _version = reader.u32()?;
    // Initial (type 0) in a long header; DCID length 8, SCID length 0.
    if first & 0x30 != 0 || reader.u8()? != 0x50 {
        return None;
    }
    let packet_number_len = usize::from(first & 0x03) + 1;
    reader.skip(8 + packet_number_len + Q046_HASH_LEN)?;
    Some(reader.position())
}

const Q046_HASH_LEN: usize = 12;
/// Google QUIC's crypto stream, which carries the CHLO.
const GQUIC_CRYPTO_STREAM: u64 = 1;

/// The CHLO data of a Q046 Initial, from its STREAM frames on the crypto stream (frame
/// type 1fdooossb: FIN, data length present, offset length, stream ID length; lengths and
/// offsets big-endian).
fn read_q046(
    datagram: &[u8],
    crypto: &mut impl FnMut(u64, &[u8]),
) -> Result<Datagram, At<QuicError>> {
    let start = q046_header(datagram).ok_or(QuicError::Truncated("Q046 header"))?;
    let mut reader = Reader::new(datagram.get(start..).unwrap_or(&[]));
    let mut seen = Datagram {
        initials: 1,
        crypto_frames: 0,
    };
    while let Some(kind) = reader.u8() {
        if kind == 0x00 {
            // PADDING runs to the end of the packet.
            break;
        }
        if kind & 0x80 == 0 {
            // Not a STREAM frame (ACK, STOP_WAITING...): nothing more to read here.
            break;
        }
        let stream_len = usize::from(kind & 0x03) + 1;
        let offset_len = match (kind >> 2) & 0x07 {
            0 => 0,
            n => usize::from(n) + 1,
        };
        let stream = big_endian(&mut reader, stream_len).ok_or(QuicError::BadFrame)?;
        let offset = big_endian(&mut reader, offset_len).ok_or(QuicError::BadFrame)?;
        let len = if kind & 0x20 != 0 {
            usize::from(
                reader
                    .u16()
                    .ok_or_else(|| reader.fault(QuicError::BadFrame))?,
            )
        } else {
            reader.remaining()
        };
        let data = reader
            .take(len)
            .ok_or_else(|| reader.fault(QuicError::BadFrame))?;
        if stream == GQUIC_CRYPTO_STREAM {
            crypto(offset, data);
            seen.crypto_frames = seen.crypto_frames.saturating_add(1);
        }
    }
    Ok(seen)
}

fn big_endian(reader: &mut Reader<'_>, len: usize) -> Option<u64> {
    let mut value = 0u64;
    for _ in 0..len {
        value = (value << 8) | u64::from(reader.u8()?);
    }
    Some(value)
}

#[cfg(test)]
mod tests;
