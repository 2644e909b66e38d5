use super::*;
use telestrip_testkit::{client_hello, client_hello_with, HelloOptions};

fn scan(bytes: &[u8]) -> Result<Scan<ClientHello>, TlsError> {
    scan_client_hello(bytes, &mut Vec::new()).map_err(|e| e.error)
}

fn sni(bytes: &[u8]) -> Option<String> {
    match scan(bytes) {
        Ok(Scan::Found(hello)) => hello.sni.map(|n| n.as_str().to_string()),
        other => panic!("expected a ClientHello, got {other:?}"),
    }
}

#[test]
fn finds_sni_after_grease_extension() {
    assert_eq!(
        sni(&client_hello("V10.Events.Data.Microsoft.com.")).as_deref(),
        Some("v10.events.data.microsoft.com")
    );
}

#[test]
fn finds_sni_across_several_records() {
    let hello = client_hello_with(&HelloOptions {
        names: vec!["split.example".into()],
        padding: 1500,
        record_size: 100,
        ..HelloOptions::default()
    });
    let Ok(Scan::Found(found)) = scan(&hello) else {
        panic!("not found")
    };
    assert_eq!(found.sni.unwrap().as_str(), "split.example");
    assert!(found.records > 10);
}

#[test]
fn every_prefix_needs_more_and_the_answer_is_stable_once_found() {
    for record_size in [0, 7, 64] {
        let hello = client_hello_with(&HelloOptions {
            names: vec!["prefix.example".into()],
            padding: 300,
            record_size,
            ..HelloOptions::default()
        });
        for len in 0..hello.len() {
            assert_eq!(
                scan(&hello[..len]),
                Ok(Scan::NeedMore),
                "len {len} record_size {record_size}"
            );
        }
        assert_eq!(sni(&hello).as_deref(), Some("prefix.example"));
        // Bytes after the ClientHello (the client's next records) change nothing.
        let mut longer = hello.clone();
        longer.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        assert_eq!(sni(&longer).as_deref(), Some("prefix.example"));
    }
}

#[test]
fn not_tls_is_told_from_the_first_bytes() {
    assert_eq!(scan(b"GET / HTTP/1.1\r\n"), Ok(Scan::NotThis));
    assert_eq!(scan(b"\x16\x02"), Ok(Scan::NotThis));
    assert_eq!(scan(b"\x16\x03\x07"), Ok(Scan::NotThis));
    assert_eq!(scan(b"SSH-2.0-OpenSSH"), Ok(Scan::NotThis));
}

#[test]
fn server_hello_is_not_a_client_hello() {
    let mut hello = client_hello("x.example");
    hello[5] = 2;
    assert_eq!(scan(&hello), Ok(Scan::NotThis));
}

#[test]
fn hello_without_server_name_has_no_sni() {
    let hello = client_hello_with(&HelloOptions::default());
    let Ok(Scan::Found(found)) = scan(&hello) else {
        panic!()
    };
    assert_eq!(found.sni, None);
    assert_eq!(found.sni_count, 0);
}

#[test]
fn first_of_two_names_is_used_and_both_are_counted() {
    let hello = client_hello_with(&HelloOptions {
        names: vec!["first.example".into(), "second.example".into()],
        ..HelloOptions::default()
    });
    let Ok(Scan::Found(found)) = scan(&hello) else {
        panic!()
    };
    assert_eq!(found.sni.unwrap().as_str(), "first.example");
    assert_eq!(found.sni_count, 2);
}

#[test]
fn notices_encrypted_client_hello() {
    let hello = client_hello_with(&HelloOptions {
        names: vec!["public.example".into()],
        ech: true,
        ..HelloOptions::default()
    });
    let Ok(Scan::Found(found)) = scan(&hello) else {
        panic!()
    };
    assert!(found.ech);
}

#[test]
fn rejects_client_hello_over_the_cap() {
    let hello = client_hello_with(&HelloOptions {
        names: vec!["big.example".into()],
        padding: MAX_CLIENT_HELLO_LEN,
        record_size: 16_000,
        ..HelloOptions::default()
    });
    assert_eq!(scan(&hello), Err(TlsError::TooLarge));
}

#[test]
fn rejects_records_over_two_to_the_fourteen() {
    let mut hello = client_hello("x.example");
    hello[3] = 0x40;
    hello[4] = 0x01;
    hello.truncate(5 + 10);
    assert_eq!(scan(&hello), Err(TlsError::RecordTooLong));
}

#[test]
fn rejects_interleaved_records() {
    let hello = client_hello_with(&HelloOptions {
        names: vec!["x.example".into()],
        record_size: 40,
        ..HelloOptions::default()
    });
    let mut mixed = hello[..45].to_vec();
    mixed.extend_from_slice(&[21, 3, 3, 0, 2, 1, 0]);
    assert_eq!(scan(&mixed), Err(TlsError::InterleavedRecord));
}

#[test]
fn rejects_names_with_separators() {
    assert_eq!(
        scan(&client_hello("evil.example/x")),
        Err(TlsError::BadServerName)
    );
}

#[test]
fn rejects_duplicate_server_name_extensions() {
    let mut hello = client_hello("a.example");
    // Append a second server_name extension and fix the lengths.
    let extra = [
        0u8, 0, 0, 14, 0, 12, 0, 0, 9, b'b', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e',
    ];
    let extra = &extra[..4 + 14];
    hello.extend_from_slice(extra);
    let grow = |bytes: &mut Vec<u8>, at: usize, width: usize| {
        let mut value = 0usize;
        for i in 0..width {
            value = value << 8 | bytes[at + i] as usize;
        }
        value += extra.len();
        for i in 0..width {
            bytes[at + width - 1 - i] = (value >> (8 * i)) as u8;
        }
    };
    grow(&mut hello, 3, 2); // record length
    grow(&mut hello, 6, 3); // handshake length
    let extensions_at = 5 + 4 + 2 + 32 + 1 + 32 + 2 + 6 + 2;
    grow(&mut hello, extensions_at, 2);
    assert_eq!(scan(&hello), Err(TlsError::DuplicateServerName));
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = scan(&bytes);
        let mut framed = vec![22, 3, 1, (bytes.len() >> 8) as u8, bytes.len() as u8];
        framed.extend_from_slice(&bytes);
        let _ = scan(&framed);
    }

    #[test]
    fn finds_any_name_in_any_record_split(
        labels in proptest::collection::vec("[a-z0-9-]{1,30}", 1..5),
        record_size in 1usize..300,
        padding in 0usize..2000,
    ) {
        let name = labels.join(".");
        let hello = client_hello_with(&HelloOptions { names: vec![name.clone()], padding, record_size, ech: false, ech_config_id: 0 });
        let Ok(Scan::Found(found)) = scan(&hello) else { panic!("not found") };
        let sni = found.sni.unwrap();
        proptest::prop_assert_eq!(sni.as_str(), name.as_str());
    }
}

#[test]
fn reads_the_config_id_of_an_outer_ech_extension() {
    let hello = telestrip_testkit::client_hello_with(&telestrip_testkit::HelloOptions {
        names: vec!["public.cdn.example".into()],
        ech: true,
        ech_config_id: 0x42,
        ..Default::default()
    });
    let Ok(Scan::Found(parsed)) = scan_client_hello(&hello, &mut Vec::new()) else {
        panic!("not parsed");
    };
    assert!(parsed.ech);
    assert_eq!(parsed.ech_config_id, Some(0x42));
}
