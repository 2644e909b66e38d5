use super::*;
use crate::inspect::tls::scan_handshake;
use crate::inspect::Scan;
use telestrip_testkit::{handshake_client_hello, quic_first_flight};

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

const RFC_DCID: &str = "8394c8f03e515708";

fn assert_keys(version: u32, key: &str, iv: &str, hp: &str) {
    let material = client_key_material(version, &hex(RFC_DCID)).unwrap();
    assert_eq!(material.key.to_vec(), hex(key), "{version:08x} key");
    assert_eq!(material.iv.to_vec(), hex(iv), "{version:08x} iv");
    assert_eq!(material.hp.to_vec(), hex(hp), "{version:08x} hp");
}

#[test]
fn version_1_keys_match_rfc_9001_appendix_a() {
    assert_keys(
        VERSION_1,
        "1f369613dd76d5467730efcbe3b1a22d",
        "fa044b2f42a3fd3b46fb255c",
        "9f50449e04a0e810283a1e9933adedd2",
    );
}

#[test]
fn version_2_keys_match_rfc_9369_appendix_a() {
    assert_keys(
        VERSION_2,
        "8b1a0bc121284290a29e0971b5cd045d",
        "91f73e2351d8fa91660e909f",
        "45b95e15235d6f45a6b19cbcb0294ba9",
    );
}

#[test]
fn draft_29_keys_match_its_appendix_a() {
    // draft-ietf-quic-tls-29 Appendix A.1.
    assert_keys(
        DRAFT_29,
        "175257a31eb09dea9366d8bb79ad80ba",
        "6b26114b9cba2b63a9e8dd4f",
        "9ddd12c994c0698b89374a9c077a3077",
    );
}

/// Reads datagrams like the engine does: CRYPTO data into a buffer by offset.
fn reassemble(datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = vec![0u8; 0];
    let mut scratch = InitialScratch::default();
    for datagram in datagrams {
        read_client_initials(datagram, &mut scratch, |offset, data| {
            let end = offset as usize + data.len();
            if stream.len() < end {
                stream.resize(end, 0);
            }
            stream[offset as usize..end].copy_from_slice(data);
        })
        .unwrap();
    }
    stream
}

fn sni_of(stream: &[u8]) -> String {
    match scan_handshake(stream).unwrap() {
        Scan::Found(hello) => hello.sni.unwrap().as_str().to_string(),
        other => panic!("no ClientHello: {other:?}"),
    }
}

#[test]
fn a_client_hello_comes_back_from_version_1_and_2_initials() {
    let hello = handshake_client_hello("v10.events.data.microsoft.com", 0);
    for version in [VERSION_1, VERSION_2] {
        let flight = quic_first_flight(version, &hello, 4096, 1, &[]);
        assert_eq!(flight.len(), 1);
        assert_eq!(flight[0].len(), 1200);
        assert_eq!(client_initial_version(&flight[0]), Some(version));
        assert_eq!(reassemble(&flight), hello);
        assert_eq!(
            sni_of(&reassemble(&flight)),
            "v10.events.data.microsoft.com"
        );
    }
}

#[test]
fn a_large_hello_over_two_datagrams_with_shuffled_frames_is_reassembled() {
    // Post-quantum key shares make ClientHellos of ~1,800 bytes: two Initial packets.
    let hello = handshake_client_hello("mobile.events.data.microsoft.com", 1500);
    // 9 frames of 200 bytes; Chromium-like shuffling across the two packets.
    let order = [4, 0, 7, 2, 8, 1, 6, 3, 5];
    for version in [VERSION_1, VERSION_2] {
        let flight = quic_first_flight(version, &hello, 200, 5, &order);
        assert_eq!(flight.len(), 2);
        assert_eq!(reassemble(&flight), hello);
        // Second datagram first: still the same stream.
        let reversed: Vec<Vec<u8>> = flight.iter().rev().cloned().collect();
        assert_eq!(
            sni_of(&reassemble(&reversed)),
            "mobile.events.data.microsoft.com"
        );
        // The first datagram alone is not enough.
        let first = reassemble(&flight[..1]);
        assert_ne!(scan_handshake(&first).ok(), Some(Scan::NotThis));
    }
}

#[test]
fn coalesced_packets_are_all_read_and_others_skipped() {
    let hello = handshake_client_hello("t.example", 0);
    let (a, b) = hello.split_at(40);
    let dcid = hex(RFC_DCID);
    let p1 = protect_client_initial(VERSION_1, &dcid, &[], 0, &crypto_frame(0, a), 0).unwrap();
    let p2 = protect_client_initial(VERSION_1, &dcid, &[], 1, &crypto_frame(40, b), 0).unwrap();
    // A Handshake packet (type 2) with a 20-byte body: skipped, not decrypted.
    let mut handshake = vec![0xe0, 0, 0, 0, 1, 0, 0, 20];
    handshake.extend_from_slice(&[0xaa; 20]);
    let datagram = [p1, handshake, p2].concat();
    let mut scratch = InitialScratch::default();
    let mut chunks = Vec::new();
    let seen = read_client_initials(&datagram, &mut scratch, |offset, data| {
        chunks.push((offset, data.len()))
    })
    .unwrap();
    assert_eq!(
        seen,
        Datagram {
            initials: 2,
            crypto_frames: 2
        }
    );
    assert_eq!(chunks, [(0, 40), (40, hello.len() - 40)]);
}

#[test]
fn an_altered_packet_does_not_decrypt() {
    let hello = handshake_client_hello("t.example", 0);
    let mut datagram = quic_first_flight(VERSION_1, &hello, 4096, 1, &[]).remove(0);
    datagram[100] ^= 1;
    let error =
        read_client_initials(&datagram, &mut InitialScratch::default(), |_, _| {}).unwrap_err();
    assert_eq!(error.error, QuicError::Decrypt);
}

#[test]
fn frames_an_initial_may_not_carry_are_errors() {
    // A STREAM frame (0x08) in an Initial packet.
    let packet =
        protect_client_initial(VERSION_1, &hex(RFC_DCID), &[], 0, &[0x08, 0, 1, 0xff], 1200)
            .unwrap();
    let error =
        read_client_initials(&packet, &mut InitialScratch::default(), |_, _| {}).unwrap_err();
    assert_eq!(error.error, QuicError::BadFrame);
}

#[test]
fn only_large_client_initials_of_known_versions_count() {
    let hello = handshake_client_hello("t.example", 0);
    let datagram = quic_first_flight(VERSION_1, &hello, 4096, 1, &[]).remove(0);
    assert_eq!(client_initial_version(&datagram[..1199]), None);
    let mut short_header = datagram.clone();
    short_header[0] &= 0x7f;
    assert_eq!(client_initial_version(&short_header), None);
    let mut other_version = datagram.clone();
    // A version reserved to exercise negotiation (RFC 9000 §15): no keys are known for it.
    other_version[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
    assert_eq!(client_initial_version(&other_version), None);
    // Version 1 type bits 0b01 are 0-RTT, which in version 2 means Initial.
    let mut zero_rtt = datagram;
    zero_rtt[0] = (zero_rtt[0] & 0xcf) | 0x10;
    assert_eq!(client_initial_version(&zero_rtt), None);
}

#[test]
fn version_negotiation_is_read_as_no_initial() {
    // Version 0, DCID and SCID of 8 bytes, then the versions offered (RFC 9000 §17.2.1).
    let mut negotiation = vec![0x80, 0, 0, 0, 0, 8];
    negotiation.extend_from_slice(&[0x22; 8]);
    negotiation.push(8);
    negotiation.extend_from_slice(&[0x33; 8]);
    negotiation.extend_from_slice(&VERSION_1.to_be_bytes());
    negotiation.extend_from_slice(&VERSION_2.to_be_bytes());
    assert_eq!(client_initial_version(&negotiation), None);
    let mut scratch = InitialScratch::default();
    let mut crypto = 0;
    let seen = read_client_initials(&negotiation, &mut scratch, |_, _| crypto += 1).unwrap();
    assert_eq!((seen.initials, seen.crypto_frames, crypto), (0, 0, 0));
}

#[test]
fn every_prefix_and_every_single_byte_change_is_handled_without_panic() {
    let hello = handshake_client_hello("t.example", 0);
    let datagram = quic_first_flight(VERSION_2, &hello, 100, 20, &[]).remove(0);
    let mut scratch = InitialScratch::default();
    for len in 0..=datagram.len() {
        let _ = read_client_initials(&datagram[..len], &mut scratch, |_, _| {});
        let _ = client_initial_version(&datagram[..len]);
    }
    for i in 0..60 {
        for bit in 0..8 {
            let mut changed = datagram.clone();
            changed[i] ^= 1 << bit;
            let _ = read_client_initials(&changed, &mut scratch, |_, _| {});
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1400)) {
        let _ = read_client_initials(&bytes, &mut InitialScratch::default(), |_, _| {});
    }

    #[test]
    fn arbitrary_long_headers_of_known_versions_never_panic(
        first in 0xc0u8..=0xff,
        v2 in proptest::bool::ANY,
        rest in proptest::collection::vec(proptest::num::u8::ANY, 0..1400),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&(if v2 { VERSION_2 } else { VERSION_1 }).to_be_bytes());
        bytes.extend_from_slice(&rest);
        let _ = read_client_initials(&bytes, &mut InitialScratch::default(), |_, _| {});
    }
}

#[test]
fn a_client_hello_comes_back_from_draft_and_google_tls_initials() {
    let hello = handshake_client_hello("x.telemetry.acme.example", 0);
    for version in [DRAFT_29, 0xff00_0020, 0xff00_001b, 0xff00_0022, 0xface_b002] {
        let datagrams = quic_first_flight(version, &hello, 4096, 1, &[]);
        assert_eq!(client_initial_version(&datagrams[0]), Some(version));
        assert_eq!(hello_kind(version), Some(HelloKind::Tls));
        assert_eq!(sni_of(&reassemble(&datagrams)), "x.telemetry.acme.example");
    }
    for version in [T050, T051] {
        let datagram = telestrip_testkit::gquic_protected_initial(version, &hello);
        assert_eq!(client_initial_version(&datagram), Some(version));
        assert_eq!(sni_of(&reassemble(&[datagram])), "x.telemetry.acme.example");
    }
}

#[test]
fn a_chlo_comes_back_from_q046_and_q050_initials() {
    use crate::inspect::gquic::{build_chlo, scan_chlo};
    let chlo = build_chlo(&[(b"SNI\0", b"x.telemetry.acme.example"), (b"VER\0", b"Q050")]);
    for datagram in [
        telestrip_testkit::gquic_q046_initial(&chlo),
        telestrip_testkit::gquic_protected_initial(Q050, &chlo),
    ] {
        let version = client_initial_version(&datagram).unwrap();
        assert_eq!(hello_kind(version), Some(HelloKind::Chlo));
        let stream = reassemble(&[datagram]);
        match scan_chlo(&stream) {
            Ok(Scan::Found(Some(name))) => assert_eq!(name.as_str(), "x.telemetry.acme.example"),
            other => panic!("{version:08x}: {other:?}"),
        }
    }
}

#[test]
fn every_prefix_of_a_q046_initial_is_handled_without_panic() {
    let chlo = crate::inspect::gquic::build_chlo(&[(b"SNI\0", b"a.example")]);
    let datagram = telestrip_testkit::gquic_q046_initial(&chlo);
    let mut scratch = InitialScratch::default();
    for len in 0..datagram.len() {
        let _ = client_initial_version(&datagram[..len]);
        let _ = read_client_initials(&datagram[..len], &mut scratch, |_, _| {});
    }
}

#[test]
fn unknown_versions_have_no_rules() {
    for version in [0x1a2a_3a4a, 0x5130_3433, 0xff00_0015, 0] {
        assert_eq!(hello_kind(version), None, "{version:08x}");
    }
}

/// One scratch reads Initials of several connections in turn, as a packet thread does:
/// the keys it keeps are used only for the connection ID and version they were made for.
#[test]
fn kept_keys_serve_only_their_connection_id_and_version() {
    let hello = handshake_client_hello("kept.example", 0);
    let frame = crypto_frame(0, &hello);
    let initial = |version: u32, dcid: &[u8]| {
        protect_client_initial(version, dcid, &[], 0, &frame, 1200).unwrap()
    };
    let read = |scratch: &mut InitialScratch, datagram: &[u8]| {
        let mut bytes = 0;
        let seen = read_client_initials(datagram, scratch, |_, data| bytes += data.len());
        seen.map(|_| bytes)
    };
    let mut scratch = InitialScratch::default();
    let datagrams = [
        initial(VERSION_1, &[1; 8]),
        initial(VERSION_1, &[1; 8]),
        initial(VERSION_1, &[2; 8]),
        initial(VERSION_2, &[2; 8]),
        initial(VERSION_1, &[2; 20]),
        initial(VERSION_1, &[1; 8]),
    ];
    for (i, datagram) in datagrams.iter().enumerate() {
        assert_eq!(
            read(&mut scratch, datagram),
            Ok(hello.len()),
            "datagram {i}"
        );
    }
    // A packet that does not decrypt under the kept keys leaves them usable.
    let mut altered = datagrams[5].clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(read(&mut scratch, &altered).is_err());
    assert_eq!(read(&mut scratch, &datagrams[5]), Ok(hello.len()));
}
