use super::*;
use telestrip_testkit::{dns_query, dns_response, Answer};

#[test]
fn reads_the_question_of_a_query() {
    let bytes = dns_query(7, "V10.Events.Data.Microsoft.com.", TYPE_AAAA);
    let message = Message::parse(&bytes).unwrap();
    assert!(!message.is_response());
    let question = message.first_question().unwrap().unwrap();
    assert_eq!(question.name.as_str(), "v10.events.data.microsoft.com");
    assert_eq!(question.qtype, TYPE_AAAA);
}

#[test]
fn reads_compressed_answers_and_cname_chains() {
    let bytes = dns_response(
        1,
        "alias.example",
        TYPE_A,
        &[
            Answer::Cname("alias.example", "target.example"),
            Answer::A("target.example", [192, 0, 2, 9]),
            Answer::Aaaa(
                "target.example",
                [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            ),
        ],
    );
    let message = Message::parse(&bytes).unwrap();
    assert!(message.is_response());
    let answers: Vec<Record> = message.answers().unwrap().map(Result::unwrap).collect();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0].name.as_str(), "alias.example");
    assert_eq!(
        answers[0].data,
        RecordData::Cname(Name::from_bytes(b"target.example").unwrap())
    );
    assert_eq!(answers[1].data, RecordData::A(Ipv4Addr::new(192, 0, 2, 9)));
    assert_eq!(answers[1].ttl, 300);
    assert!(matches!(answers[2].data, RecordData::Aaaa(_)));
}

#[test]
fn reads_several_questions() {
    let mut bytes = dns_query(1, "a.example", TYPE_A);
    bytes[5] = 2;
    bytes.extend_from_slice(&[1, b'b', 0xc0, 14, 0, 1, 0, 1]);
    let message = Message::parse(&bytes).unwrap();
    let names: Vec<String> = message
        .questions()
        .map(|q| q.unwrap().name.as_str().to_string())
        .collect();
    assert_eq!(names, ["a.example", "b.example"]);
}

#[test]
fn rejects_forward_and_self_pointers() {
    let mut bytes = dns_query(1, "x", TYPE_A);
    // Replace the name with a pointer to itself (offset 12).
    bytes.truncate(12);
    bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(
        message.first_question().map_err(|e| e.error),
        Err(DnsError::ForwardPointer)
    );

    let mut forward = dns_query(1, "x", TYPE_A);
    forward.truncate(12);
    forward.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1, 0, 0, 1, b'a', 0]);
    let message = Message::parse(&forward).unwrap();
    assert_eq!(
        message.first_question().map_err(|e| e.error),
        Err(DnsError::ForwardPointer)
    );
}

#[test]
fn rejects_pointer_chains_longer_than_the_cap() {
    // A chain of pointers, each pointing to the one before it, ending at a real name.
    let mut bytes = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
    let start = bytes.len();
    bytes.extend_from_slice(&[1, b'a', 0]);
    let mut previous = start;
    for _ in 0..(MAX_POINTER_HOPS + 1) {
        let here = bytes.len();
        bytes.extend_from_slice(&[0xc0 | (previous >> 8) as u8, previous as u8]);
        previous = here;
    }
    // The question points at the last pointer of the chain.
    let question_at = bytes.len();
    bytes.extend_from_slice(&[0xc0 | (previous >> 8) as u8, previous as u8, 0, 1, 0, 1]);
    let mut reader = Reader::at(&bytes, question_at);
    assert_eq!(
        read_name(&bytes, &mut reader).err().map(|e| e.error),
        Some(DnsError::TooManyPointers)
    );
}

#[test]
fn rejects_labels_that_hide_a_dot() {
    let mut bytes = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[8]);
    bytes.extend_from_slice(b"evil.com");
    bytes.extend_from_slice(&[7]);
    bytes.extend_from_slice(b"example");
    bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(
        message.first_question().map_err(|e| e.error),
        Err(DnsError::BadName)
    );
}

#[test]
fn rejects_reserved_label_types() {
    let mut bytes = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[0x40, 0, 0, 1, 0, 1]);
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(
        message.first_question().map_err(|e| e.error),
        Err(DnsError::ReservedLabelType)
    );
}

#[test]
fn caps_questions_read() {
    let mut bytes = dns_query(1, "a.example", TYPE_A);
    bytes[4] = 0xff;
    bytes[5] = 0xff;
    for _ in 0..20 {
        bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    }
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(message.questions().count(), MAX_QUESTIONS);
}

#[test]
fn every_prefix_of_a_response_parses_or_fails_cleanly() {
    let bytes = dns_response(
        1,
        "t.example",
        TYPE_A,
        &[Answer::A("t.example", [192, 0, 2, 1])],
    );
    for len in 0..bytes.len() {
        let prefix = &bytes[..len];
        match Message::parse(prefix) {
            Err(e) => assert_eq!(e.error, DnsError::TruncatedHeader),
            Ok(message) => {
                let _ = message.first_question();
                if let Ok(answers) = message.answers() {
                    assert!(answers.filter(Result::is_ok).count() == 0);
                }
            }
        }
    }
    let complete = Message::parse(&bytes).unwrap();
    assert_eq!(complete.answers().unwrap().count(), 1);
}

#[test]
fn splits_length_prefixed_tcp_messages() {
    let query = dns_query(1, "a.example", TYPE_A);
    let mut stream = (query.len() as u16).to_be_bytes().to_vec();
    stream.extend_from_slice(&query);
    stream.extend_from_slice(&(query.len() as u16).to_be_bytes());
    stream.extend_from_slice(&query[..5]);
    let Scan::Found((first, used)) = split_tcp(&stream) else {
        panic!("first message")
    };
    assert_eq!(first, &query[..]);
    assert_eq!(split_tcp(&stream[used..]), Scan::NeedMore);
    assert_eq!(split_tcp(&[0]), Scan::NeedMore);
}

/// `answer` is an NXDOMAIN answer with this id and question, and no answer records.
fn assert_nxdomain<'a>(answer: &'a [u8], id: u16, question: (&str, u16)) -> Message<'a> {
    let message = Message::parse(answer).unwrap();
    assert!(message.is_response());
    assert_eq!(message.id, id);
    assert_eq!(message.rcode(), 3);
    let first = message.first_question().unwrap().unwrap();
    assert_eq!((first.name.as_str(), first.qtype), question);
    assert_eq!(message.answers().unwrap().count(), 0);
    message
}

#[test]
fn builds_an_nxdomain_answer_for_a_query() {
    let mut query = dns_query(0x1234, "t.example", TYPE_AAAA);
    // An EDNS OPT record in the additional section must not be copied.
    query[11] = 1;
    query.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
    let mut answer = Vec::new();
    nxdomain_answer(&query, &mut answer).unwrap();
    let message = assert_nxdomain(&answer, 0x1234, ("t.example", TYPE_AAAA));
    assert_eq!(message.flags & 0x0100, 0x0100, "RD copied");
    // The SOA that makes the NXDOMAIN cacheable: after the question, type 6, TTL, 24
    // bytes of data ending in the negative-caching minimum.
    assert_eq!(answer[8..12], [0, 1, 0, 0], "one authority record");
    let soa = &answer[12 + 11 + 4..];
    assert_eq!(soa.len(), 2 + 2 + 2 + 4 + 2 + 24);
    assert_eq!(soa[2..4], [0, 6]);
    assert_eq!(soa[6..10], NXDOMAIN_CACHE_SECONDS.to_be_bytes());
    assert_eq!(soa[soa.len() - 4..], NXDOMAIN_CACHE_SECONDS.to_be_bytes());
}

#[test]
fn an_nxdomain_takes_the_place_of_a_cloaked_answer() {
    let response = dns_response(
        0x4321,
        "cloaked.example",
        TYPE_A,
        &[
            Answer::Cname("cloaked.example", "x.telemetry.example"),
            Answer::A("x.telemetry.example", [192, 0, 2, 9]),
        ],
    );
    let mut answer = Vec::new();
    nxdomain_instead_of(&response, &mut answer).unwrap();
    // No address left.
    assert_nxdomain(&answer, 0x4321, ("cloaked.example", TYPE_A));
    // A query is answered, not replaced.
    let query = dns_query(1, "cloaked.example", TYPE_A);
    assert!(nxdomain_instead_of(&query, &mut answer).is_err());
}

#[test]
fn refuses_to_answer_responses_or_empty_queries() {
    let mut out = Vec::new();
    let response = dns_response(1, "t.example", TYPE_A, &[]);
    assert!(nxdomain_answer(&response, &mut out).is_err());
    assert!(nxdomain_answer(&[0; 12], &mut out).is_err());
    assert!(nxdomain_answer(&[0; 5], &mut out).is_err());
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        if let Ok(message) = Message::parse(&bytes) {
            let _ = message.questions().count();
            if let Ok(answers) = message.answers() {
                let _ = answers.count();
            }
        }
    }

    #[test]
    fn finds_any_valid_name(labels in proptest::collection::vec("[a-z0-9-]{1,20}", 1..6)) {
        let name = labels.join(".");
        let bytes = dns_query(3, &name, TYPE_A);
        let question = Message::parse(&bytes).unwrap().first_question().unwrap().unwrap();
        proptest::prop_assert_eq!(question.name.as_str(), name.as_str());
    }
}

#[test]
fn reads_address_hints_and_ech_of_https_records() {
    let v6 = [0xfd, 0x78, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let response = dns_response(
        7,
        "t.example",
        TYPE_HTTPS,
        &[Answer::Https("t.example", [10, 78, 2, 2], v6, true)],
    );
    let message = Message::parse(&response).unwrap();
    let record = message.answers().unwrap().next().unwrap().unwrap();
    let RecordData::Svcb(hints) = record.data else {
        panic!("not read as SVCB: {:?}", record.data);
    };
    assert!(hints.ech);
    let (config_id, public_name) = hints.ech_config.unwrap();
    assert_eq!(config_id, telestrip_testkit::ECH_CONFIG_ID);
    assert_eq!(public_name.as_str(), telestrip_testkit::ECH_PUBLIC_NAME);
    let addresses: Vec<String> = hints.addresses().map(|a| a.to_string()).collect();
    assert_eq!(addresses, ["10.78.2.2", "fd78:2::2"]);
}

#[test]
fn svcb_data_is_checked_and_every_prefix_is_refused_cleanly() {
    // Priority 1, target "a.", ipv4hint 10.0.0.1, ech.
    let rdata = [0, 1, 1, b'a', 0, 0, 4, 0, 4, 10, 0, 0, 1, 0, 5, 0, 1, 0];
    let hints = read_svcb(&rdata).unwrap();
    assert!(hints.ech);
    assert_eq!(hints.addresses().count(), 1);
    for cut in 0..rdata.len() {
        // Cut inside the priority, name or a parameter: refused; between parameters: fewer.
        match read_svcb(&rdata[..cut]) {
            Ok(partial) => assert!(
                matches!(cut, 5 | 13),
                "accepted a cut at {cut}: {partial:?}"
            ),
            Err(error) => assert_eq!(error.error, DnsError::BadRecordData),
        }
    }
    // A label longer than 63 bytes in the target name.
    assert_eq!(
        read_svcb(&[0, 1, 64]).map_err(|e| e.error),
        Err(DnsError::BadRecordData)
    );
    // A parameter whose length runs past the end.
    assert_eq!(
        read_svcb(&[0, 1, 0, 0, 4, 0, 9, 1]).map_err(|e| e.error),
        Err(DnsError::BadRecordData)
    );
}
