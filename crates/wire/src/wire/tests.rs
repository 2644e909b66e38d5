use super::*;
use telestrip_testkit::{Hosts, Vlan, ACK, SYN};

fn hosts() -> Hosts {
    Hosts::new("192.0.2.10", 40000, "198.51.100.20", 443)
}

#[test]
fn parses_ethernet_ipv4_tcp() {
    let frame = hosts().tcp(true, 77, SYN, &[]);
    let packet = parse(LinkType::Ethernet, &frame).unwrap();
    assert_eq!(packet.src, "192.0.2.10".parse::<IpAddr>().unwrap());
    assert_eq!(packet.dst_port, 443);
    assert_eq!(packet.protocol, Protocol::Tcp);
    let tcp = packet.tcp.unwrap();
    assert!(tcp.syn && !tcp.ack);
    assert_eq!(tcp.seq, 77);
}

#[test]
fn parses_single_vlan_and_qinq() {
    for vlan in [Vlan::Single(42), Vlan::Double(100, 200)] {
        let frame = hosts().with_vlan(vlan).tcp(true, 1, ACK, b"payload");
        let packet = parse(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(packet.payload, b"payload", "{vlan:?}");
        assert_eq!(packet.dst_port, 443);
    }
}

#[test]
fn parses_ipv6_udp() {
    let frame = Hosts::new("2001:db8::1", 5353, "2001:db8::2", 53).udp(true, b"q");
    let packet = parse(LinkType::Ethernet, &frame).unwrap();
    assert_eq!(packet.dst, "2001:db8::2".parse::<IpAddr>().unwrap());
    assert_eq!(packet.protocol, Protocol::Udp);
    assert_eq!(packet.payload, b"q");
}

#[test]
fn parses_ipv6_with_extension_headers() {
    // IPv6 + hop-by-hop options (8 bytes) + destination options (8 bytes) + UDP.
    let udp_payload = b"dns";
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x86, 0xdd];
    let ext_len = 16;
    let udp_len = 8 + udp_payload.len();
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&((ext_len + udp_len) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 64]); // next header: hop-by-hop
    frame.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    frame.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    frame.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop → destination options
    frame.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // destination options → UDP
    frame.extend_from_slice(&[0x13, 0x88, 0, 53]);
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(udp_payload);
    let packet = parse(LinkType::Ethernet, &frame).unwrap();
    assert_eq!(packet.protocol, Protocol::Udp);
    assert_eq!(packet.dst_port, 53);
    assert_eq!(packet.payload, b"dns");
    // Extension headers are left to the full parse.
    assert_eq!(peek(LinkType::Ethernet, &frame), None);
}

#[test]
fn parses_raw_ip_linux_cooked_and_loopback() {
    let frame = hosts().tcp(true, 9, ACK, b"x");
    let ip = &frame[14..];
    assert_eq!(parse(LinkType::RawIp, ip).unwrap().payload, b"x");

    // SLL v1: 16-byte header ending in the EtherType.
    let mut sll = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(ip);
    assert_eq!(parse(LinkType::LinuxSll, &sll).unwrap().payload, b"x");

    // SLL v2: 20-byte header starting with the EtherType.
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    sll2.extend_from_slice(ip);
    assert_eq!(parse(LinkType::LinuxSll2, &sll2).unwrap().payload, b"x");

    // BSD loopback: address family 2 in host byte order (either order accepted).
    for family in [[2, 0, 0, 0], [0, 0, 0, 2]] {
        let mut null = family.to_vec();
        null.extend_from_slice(ip);
        assert_eq!(parse(LinkType::Null, &null).unwrap().payload, b"x");
    }
}

#[test]
fn arp_is_not_ip() {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&[0; 20]);
    assert_eq!(parse(LinkType::Ethernet, &frame), Err(WireError::NotIp));
}

#[test]
fn every_prefix_of_a_frame_is_an_error_or_a_shorter_packet() {
    let frame = hosts()
        .with_vlan(Vlan::Double(1, 2))
        .tcp(true, 1, ACK, b"hello world");
    for len in 0..frame.len() {
        // Must not panic; a truncated frame is an error, never a longer payload.
        if let Ok(packet) = parse(LinkType::Ethernet, &frame[..len]) {
            assert!(packet.payload.len() < 11);
        }
    }
    assert!(parse(LinkType::Ethernet, &frame).is_ok());
}

#[test]
fn errors_say_where_and_stay_small() {
    let frame = hosts().tcp(true, 1, ACK, b"x");
    // Cut inside the IPv4 header: it starts after the 14-byte Ethernet header and takes 20.
    let error = parse(LinkType::Ethernet, &frame[..20]).unwrap_err();
    let WireError::Network(fault) = error else {
        panic!("{error:?}")
    };
    assert_eq!(
        (fault.offset, fault.needed, fault.available),
        (Some(14), 20, 6)
    );
    assert_eq!(
        error.to_string(),
        "network layer: truncated IP packet at byte 14 (20 bytes needed, 6 there)"
    );
    // Behind a Linux cooked header read by telestrip, in the frame's offsets too.
    let mut cooked = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    cooked.extend_from_slice(&frame[14..30]);
    let WireError::Network(fault) = parse(LinkType::LinuxSll, &cooked).unwrap_err() else {
        panic!()
    };
    assert_eq!(
        (fault.offset, fault.needed, fault.available),
        (Some(16), 20, 16)
    );
    let short = parse(LinkType::LinuxSll, &cooked[..9]).unwrap_err();
    assert_eq!(
        short.to_string(),
        "link layer: truncated SLL header at byte 0 (16 bytes needed, 9 there)"
    );
    assert!(std::mem::size_of::<WireError>() <= 40);
}

#[test]
fn reports_the_layer_that_failed() {
    let frame = hosts().tcp(true, 1, ACK, b"x");
    assert!(matches!(
        parse(LinkType::Ethernet, &frame[..10]),
        Err(WireError::Link(_))
    ));
    assert!(matches!(
        parse(LinkType::Ethernet, &frame[..20]),
        Err(WireError::Network(_))
    ));
    let mut bad_tcp = frame.clone();
    bad_tcp[14 + 20 + 12] = 0x20; // TCP data offset of 2 words, below the minimum of 5
    assert!(matches!(
        parse(LinkType::Ethernet, &bad_tcp),
        Err(WireError::Transport(_))
    ));
}

#[test]
fn ipv4_fragments_are_flagged() {
    let mut frame = hosts().udp(true, b"0123456789abcdef");
    frame[14 + 6] = 0x20; // more fragments
    let packet = parse(LinkType::Ethernet, &frame).unwrap();
    assert!(packet.fragment.is_some_and(|f| f.more && f.offset == 0));
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        for link in LinkType::ALL {
            let _ = parse(link, &bytes);
        }
    }
}

/// Frames of every shape the common path reads: VLAN tags, IPv6 (also with extension
/// headers and fragments), IPv4 fragments, TCP with payload, UDP.
fn common_frames() -> Vec<Vec<u8>> {
    let v6 = Hosts::new("2001:db8::1", 5353, "2001:db8::2", 443);
    let mut frames = vec![
        hosts().tcp(true, 77, SYN, &[]),
        hosts().tcp(false, 9, ACK, b"server data"),
        hosts().udp(true, b"datagram"),
        hosts()
            .with_vlan(Vlan::Single(7))
            .tcp(true, 1, ACK, b"tagged"),
        hosts().with_vlan(Vlan::Double(1, 2)).udp(true, b"qinq"),
        v6.tcp(true, 5, ACK, b"six"),
        v6.with_vlan(Vlan::Single(3)).udp(false, b"six udp"),
    ];
    frames.extend(telestrip_testkit::ip_fragments(
        &hosts().udp(true, &[7; 64]),
        24,
        9,
    ));
    frames.extend(telestrip_testkit::ip_fragments(
        &v6.udp(true, &[8; 64]),
        24,
        10,
    ));
    frames
}

#[test]
fn the_common_path_reads_common_frames_as_the_general_path_does() {
    for frame in common_frames() {
        let common = parse_common(LinkType::Ethernet, &frame);
        assert!(common.is_some(), "not on the common path: {frame:02x?}");
        assert_eq!(
            common.map(Ok),
            Some(parse_general(LinkType::Ethernet, &frame))
        );
        // The same IP packet as raw IP and behind a Linux cooked v2 header.
        let ip_start = frame.len() - packet_len(&frame);
        let ip = &frame[ip_start..];
        assert_eq!(
            parse_common(LinkType::RawIp, ip).map(Ok),
            Some(parse_general(LinkType::RawIp, ip))
        );
        let mut sll2 = vec![frame[ip_start - 2], frame[ip_start - 1]];
        sll2.extend_from_slice(&[0; SLL2_HEADER_LEN - 2]);
        sll2.extend_from_slice(ip);
        assert_eq!(
            parse_common(LinkType::LinuxSll2, &sll2).map(Ok),
            Some(parse_general(LinkType::LinuxSll2, &sll2))
        );
        let mut sll = vec![0; SLL_HEADER_LEN - 2];
        sll.extend_from_slice(&[frame[ip_start - 2], frame[ip_start - 1]]);
        sll.extend_from_slice(ip);
        assert_eq!(
            parse_common(LinkType::LinuxSll, &sll).map(Ok),
            Some(parse_general(LinkType::LinuxSll, &sll))
        );
    }
}

#[test]
fn peek_reads_plain_frames_as_the_full_parse_does() {
    for frame in common_frames() {
        let packet = parse(LinkType::Ethernet, &frame).unwrap();
        let peeked = peek(LinkType::Ethernet, &frame);
        assert_eq!(peeked, packet.peeked(), "{frame:02x?}");
        assert_eq!(peeked.is_none(), packet.fragment.is_some(), "{frame:02x?}");
        let ip = &frame[frame.len() - packet_len(&frame)..];
        assert_eq!(peek(LinkType::RawIp, ip), packet.peeked());
    }
    let syn_frame = hosts().tcp(true, 1, SYN, &[]);
    let syn = peek(LinkType::Ethernet, &syn_frame).unwrap();
    assert!(syn.bare_syn);
    assert_eq!(syn.src[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    assert_eq!(syn.src[12..], [192, 0, 2, 10]);
    let data_frame = hosts().tcp(false, 1, ACK, b"reply");
    let data = peek(LinkType::Ethernet, &data_frame).unwrap();
    assert!(!data.bare_syn);
    assert_eq!(
        (data.src_port, data.dst_port, data.payload),
        (443, 40000, &b"reply"[..])
    );
}

#[test]
fn peek_leaves_tunnels_to_the_full_parse() {
    use telestrip_testkit::{tunnel, Wrap};
    let inner = hosts().tcp(true, 5, ACK, b"inner");
    for wrap in [
        Wrap::IpInIpv4,
        Wrap::IpInIpv6,
        Wrap::Gre,
        Wrap::GreTap,
        Wrap::Vxlan,
        Wrap::GtpU,
    ] {
        assert_eq!(
            peek(LinkType::Ethernet, &tunnel(&inner, wrap)),
            None,
            "{wrap:?}"
        );
    }
    // UDP on a tunnel port is left too, tunnel or not.
    let vxlan_port = Hosts::new("192.0.2.1", 5000, "192.0.2.2", 4789).udp(true, b"\0not vxlan");
    assert_eq!(peek(LinkType::Ethernet, &vxlan_port), None);
}

/// Length of the IP packet at the end of a built frame (its headers say it).
fn packet_len(frame: &[u8]) -> usize {
    match parse_general(LinkType::Ethernet, frame).unwrap().src {
        IpAddr::V4(_) => {
            let sliced = SlicedPacket::from_ethernet(frame).unwrap();
            match sliced.net.unwrap() {
                NetSlice::Ipv4(ip) => ip.header().total_len() as usize,
                _ => unreachable!(),
            }
        }
        IpAddr::V6(_) => {
            let sliced = SlicedPacket::from_ethernet(frame).unwrap();
            match sliced.net.unwrap() {
                NetSlice::Ipv6(ip) => 40 + ip.header().payload_length() as usize,
                _ => unreachable!(),
            }
        }
    }
}

proptest::proptest! {
    /// Whatever the common path makes of a frame (a real one with bytes changed or cut, or
    /// noise), the general path makes the same of it; what `peek` reads, the full parse
    /// reads the same way.
    #[test]
    fn the_common_path_never_disagrees_with_the_general_path(
        pick in 0usize..11,
        edits in proptest::collection::vec((0usize..120, proptest::num::u8::ANY), 0..4),
        cut in 0usize..200,
        noise in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
    ) {
        let frames = common_frames();
        let mut frame = frames[pick % frames.len()].clone();
        for (at, byte) in edits {
            if let Some(b) = frame.get_mut(at) {
                *b = byte;
            }
        }
        frame.truncate(cut.max(1));
        for bytes in [&frame, &noise] {
            for link in [
                LinkType::Ethernet,
                LinkType::RawIp,
                LinkType::LinuxSll,
                LinkType::LinuxSll2,
            ] {
                if let Some(packet) = parse_common(link, bytes) {
                    proptest::prop_assert_eq!(Ok(packet), parse_general(link, bytes));
                }
                if let Some(peeked) = peek(link, bytes) {
                    let packet = parse(link, bytes);
                    proptest::prop_assert_eq!(
                        Some(peeked),
                        packet.ok().and_then(|packet| packet.peeked())
                    );
                }
            }
        }
    }
}

/// An SLL v1 header for a packet captured on a device of type `arphrd` with protocol
/// `protocol` (libpcap `sll.h`: packet type, ARPHRD type, address length, 8 address
/// bytes, protocol).
fn sll_header(arphrd: u16, protocol: u16) -> Vec<u8> {
    let mut header = vec![0, 0];
    header.extend_from_slice(&arphrd.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    header.extend_from_slice(&protocol.to_be_bytes());
    header
}

#[test]
fn reads_linux_cooked_v1_of_every_device_type() {
    let frame = hosts().tcp(true, 9, ACK, b"x");
    let ip = &frame[14..];
    // Loopback (772, `tcpdump -i any` on lo), IP GRE (778), tun/none (65534), a cellular
    // raw-IP device (519), Ethernet (1).
    for arphrd in [772, 778, 65534, 519, 1] {
        let mut sll = sll_header(arphrd, 0x0800);
        sll.extend_from_slice(ip);
        assert_eq!(
            parse(LinkType::LinuxSll, &sll).unwrap().payload,
            b"x",
            "ARPHRD {arphrd}"
        );
    }
    // Netlink (824): the protocol field is a netlink family, never IP.
    let mut netlink = sll_header(824, 0);
    netlink.extend_from_slice(&[0; 20]);
    assert_eq!(parse(LinkType::LinuxSll, &netlink), Err(WireError::NotIp));
}

#[test]
fn reads_ppp_with_and_without_hdlc_bytes_and_compressed_protocol() {
    let frame = hosts().udp(true, b"ppp");
    let ip = &frame[14..];
    for header in [&[0xff, 0x03, 0x00, 0x21][..], &[0x00, 0x21], &[0x21]] {
        let mut ppp = header.to_vec();
        ppp.extend_from_slice(ip);
        assert_eq!(
            parse(LinkType::Ppp, &ppp).unwrap().payload,
            b"ppp",
            "{header:02x?}"
        );
        let mut with_direction = vec![1];
        with_direction.extend_from_slice(&ppp);
        assert_eq!(
            parse(LinkType::PppWithDirection, &with_direction)
                .unwrap()
                .payload,
            b"ppp"
        );
    }
    // LCP (0xc021) is PPP's own business.
    assert_eq!(
        parse(LinkType::Ppp, &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4]),
        Err(WireError::NotIp)
    );
    assert_eq!(
        parse(LinkType::Ppp, &[0xff, 0x03]),
        Err(WireError::Link(Fault::new("truncated PPP header").at(2)))
    );
}

#[test]
fn reads_pppoe_sessions_on_ethernet_and_as_their_own_link_type() {
    let frame = hosts().tcp(true, 1, ACK, b"dsl");
    let ip = &frame[14..];
    let mut session = vec![0x11, 0x00, 0x12, 0x34];
    session.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    session.extend_from_slice(&[0x00, 0x21]);
    session.extend_from_slice(ip);
    assert_eq!(
        parse(LinkType::PppOverEthernet, &session).unwrap().payload,
        b"dsl"
    );
    let mut ethernet = frame[..12].to_vec();
    ethernet.extend_from_slice(&[0x88, 0x64]);
    ethernet.extend_from_slice(&session);
    // Ethernet pads short frames; the PPPoE length bounds the packet.
    ethernet.extend_from_slice(&[0; 6]);
    assert_eq!(
        parse(LinkType::Ethernet, &ethernet).unwrap().payload,
        b"dsl"
    );
    session[0] = 0x12;
    assert_eq!(
        parse(LinkType::PppOverEthernet, &session),
        Err(WireError::Link(
            Fault::new("not a PPPoE session packet").at(0)
        ))
    );
    // On Ethernet, the offset is the frame's.
    ethernet[14] = 0x12;
    assert_eq!(
        parse(LinkType::Ethernet, &ethernet),
        Err(WireError::Link(
            Fault::new("not a PPPoE session packet").at(14)
        ))
    );
}

/// An NFLOG frame as `tcpdump -i nflog:N` writes it on a little-endian host: header, a
/// prefix attribute, then the payload attribute.
fn nflog_frame(ip: &[u8]) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 5];
    let prefix = b"telestrip\0";
    frame.extend_from_slice(&((4 + prefix.len()) as u16).to_le_bytes());
    frame.extend_from_slice(&10u16.to_le_bytes());
    frame.extend_from_slice(prefix);
    frame.resize(frame.len().next_multiple_of(4), 0);
    frame.extend_from_slice(&((4 + ip.len()) as u16).to_le_bytes());
    frame.extend_from_slice(&9u16.to_le_bytes());
    frame.extend_from_slice(ip);
    frame
}

#[test]
fn reads_the_packet_of_an_nflog_frame() {
    let frame = hosts().udp(true, b"logged");
    let nflog = nflog_frame(&frame[14..]);
    assert_eq!(parse(LinkType::Nflog, &nflog).unwrap().payload, b"logged");
    for len in 0..nflog.len() {
        // Never panics; a frame cut inside an attribute is an error, not a packet.
        let _ = parse(LinkType::Nflog, &nflog[..len]);
    }
}

#[test]
fn opens_every_kind_of_tunnel() {
    use telestrip_testkit::{tunnel, Wrap};
    let v4 = hosts().tcp(true, 5, ACK, b"inner");
    let v6 = Hosts::new("2001:db8::1", 40000, "2001:db8::2", 443).tcp(true, 5, ACK, b"inner");
    let cases = [
        (Wrap::IpInIpv4, Tunnel::IpInIp),
        (Wrap::IpInIpv6, Tunnel::IpInIp),
        (Wrap::Gre, Tunnel::Gre),
        (Wrap::GreTap, Tunnel::Gre),
        (Wrap::Vxlan, Tunnel::Vxlan),
        (Wrap::GtpU, Tunnel::GtpU),
    ];
    for inner in [&v4, &v6] {
        let expected = parse(LinkType::Ethernet, inner).unwrap();
        for (wrap, kind) in cases {
            let outer = tunnel(inner, wrap);
            let packet = parse(LinkType::Ethernet, &outer).unwrap();
            assert_eq!(packet.src, expected.src, "{wrap:?}");
            assert_eq!(packet.dst_port, 443, "{wrap:?}");
            assert_eq!(packet.payload, b"inner", "{wrap:?}");
            assert_eq!(packet.tunnel, Some(kind), "{wrap:?}");
            assert_eq!(packet.unopened, None, "{wrap:?}");
        }
    }
}

#[test]
fn opens_nested_tunnels_up_to_the_cap() {
    use telestrip_testkit::{tunnel, Wrap};
    let mut frame = hosts().tcp(true, 5, ACK, b"deep");
    let outer_first = [Wrap::GtpU, Wrap::Gre, Wrap::Vxlan, Wrap::IpInIpv4];
    for wrap in outer_first.iter().rev() {
        frame = tunnel(&frame, *wrap);
    }
    let packet = parse(LinkType::Ethernet, &frame).unwrap();
    assert_eq!(packet.payload, b"deep");
    assert_eq!(packet.tunnel, Some(Tunnel::GtpU));
    // One more level than the cap: the innermost tunnel stays closed.
    let deeper = tunnel(&frame, Wrap::Gre);
    let packet = parse(LinkType::Ethernet, &deeper).unwrap();
    assert_eq!(packet.tunnel, Some(Tunnel::Gre));
    assert_eq!(packet.unopened, Some(Tunnel::IpInIp));
    assert_ne!(packet.payload, b"deep");
}

#[test]
fn rejects_tunnels_it_cannot_open_without_losing_the_outer_packet() {
    use telestrip_testkit::{tunnel, Wrap};
    let inner = hosts().tcp(true, 5, ACK, b"inner");
    // GRE carrying MPLS (0x8847): not opened.
    let mut gre = tunnel(&inner, Wrap::Gre);
    let gre_start = 14 + 20;
    gre[gre_start + 2..gre_start + 4].copy_from_slice(&0x8847u16.to_be_bytes());
    let packet = parse(LinkType::Ethernet, &gre).unwrap();
    assert_eq!(packet.protocol, Protocol::Other(47));
    assert_eq!(packet.unopened, Some(Tunnel::Gre));
    // GTP-U whose inner packet is cut short: the UDP datagram itself is judged.
    let mut gtp = tunnel(&inner, Wrap::GtpU);
    gtp.truncate(gtp.len() - 30);
    let ip_len = (gtp.len() - 14) as u16;
    gtp[16..18].copy_from_slice(&ip_len.to_be_bytes());
    gtp[24..26].copy_from_slice(&0u16.to_be_bytes());
    gtp[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    gtp[40..42].copy_from_slice(&0u16.to_be_bytes());
    let packet = parse_general(LinkType::Ethernet, &gtp).and_then(open_tunnels);
    let packet = packet.unwrap();
    assert_eq!(packet.protocol, Protocol::Udp);
    assert_eq!(packet.dst_port, 2152);
    assert_eq!(packet.unopened, Some(Tunnel::GtpU));
}

#[test]
fn udp_on_tunnel_ports_that_is_not_a_tunnel_is_plain_udp() {
    let vxlan_port = Hosts::new("192.0.2.1", 5000, "192.0.2.2", 4789).udp(true, b"\0not vxlan");
    let gtp_echo = Hosts::new("192.0.2.1", 2152, "192.0.2.2", 2152).udp(true, &[0x32, 1, 0, 4]);
    for frame in [vxlan_port, gtp_echo] {
        let packet = parse(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(packet.protocol, Protocol::Udp);
        assert_eq!((packet.tunnel, packet.unopened), (None, None));
    }
}

#[test]
fn every_prefix_of_a_tunnelled_frame_is_an_error_or_a_packet() {
    use telestrip_testkit::{tunnel, Wrap};
    let inner = hosts().tcp(true, 5, ACK, b"inner");
    for wrap in [
        Wrap::Gre,
        Wrap::GreTap,
        Wrap::Vxlan,
        Wrap::GtpU,
        Wrap::IpInIpv6,
    ] {
        let frame = tunnel(&inner, wrap);
        for len in 0..frame.len() {
            if let Ok(packet) = parse(LinkType::Ethernet, &frame[..len]) {
                assert_ne!(packet.payload, b"inner", "{wrap:?} cut at {len}");
            }
        }
    }
}

#[test]
fn udp_checksums_are_checked_over_v4_and_v6_and_a_missing_one_is_none() {
    for frame in [
        hosts().udp(true, b"an initial"),
        Hosts::new("2001:db8::1", 5353, "2001:db8::2", 443).udp(true, b"an initial"),
    ] {
        let packet = parse(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(packet.udp_checksum_valid(), Some(true));
        assert_eq!(packet.checksum_valid(), Some(true));
        assert_eq!(packet.tcp_checksum_valid(), None);
        let mut wrong = frame.clone();
        let last = wrong.len() - 1;
        wrong[last] ^= 0x01;
        let packet = parse(LinkType::Ethernet, &wrong).unwrap();
        assert_eq!(packet.udp_checksum_valid(), Some(false));
    }
    // IPv4 lets a sender leave the checksum out (0): nothing to check.
    let mut unchecked = hosts().udp(true, b"x");
    unchecked[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let packet = parse(LinkType::Ethernet, &unchecked).unwrap();
    assert_eq!(packet.udp_checksum_valid(), None);
}
