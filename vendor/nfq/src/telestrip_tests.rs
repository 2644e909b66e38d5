//! telestrip's tests of the netlink messages this crate reads and builds (see TELESTRIP.md):
//! a packet message as the kernel sends it is parsed into a `Message`, and the verdict
//! messages `put_verdict` writes (one, or several back to back as `verdict_batch` sends
//! them) carry the header, verdict, packet id and mark the kernel expects.

use super::*;
use std::convert::TryInto;

const QUEUE: u16 = 3;

fn nfqnl_packet_hdr(packet_id: u32) -> nfqnl_msg_packet_hdr {
    nfqnl_msg_packet_hdr {
        packet_id: be32_to_cpu(packet_id),
        hw_protocol: be16_to_cpu(0x0800),
        hook: 1,
    }
}

/// A NFQNL_MSG_PACKET message as the kernel writes it: packet header, mark, a timestamp
/// (which starts 4 bytes into an attribute, so it is not 8-byte aligned) and the payload.
fn kernel_packet(buffer: &mut [u32], packet_id: u32, payload: &[u8]) -> usize {
    unsafe {
        let mut nlmsg = Nlmsg::new(buffer);
        nfq_hdr_put(&mut nlmsg, NFQNL_MSG_PACKET as u16, QUEUE, false);
        nlmsg.put_slice(NFQA_PACKET_HDR as u16, &[nfqnl_packet_hdr(packet_id)]);
        nlmsg.put_u32(NFQA_MARK as u16, 0x10);
        // As bytes: put_slice copies a typed slice, and u64s need not be aligned here.
        let mut timestamp = 1_700_000_000u64.to_be_bytes().to_vec();
        timestamp.extend_from_slice(&250_000u64.to_be_bytes());
        nlmsg.put_slice(NFQA_TIMESTAMP as u16, &timestamp);
        nlmsg.put_slice(NFQA_PAYLOAD as u16, payload);
        nlmsg.adjust_len();
        nlmsg.len
    }
}

fn parsed(buffer: &[u32]) -> Message {
    let mut queue = Queue::open().expect("a netfilter netlink socket");
    unsafe { parse_msg(buffer.as_ptr() as *const nlmsghdr, &mut queue) };
    queue.queue.pop_front().expect("one message")
}

/// The u32 at byte `offset` of `words`, in the byte order of the wire (big endian).
fn be32_at(words: &[u32], offset: usize) -> u32 {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn ne16_at(words: &[u32], offset: usize) -> u16 {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    u16::from_ne_bytes(bytes[offset..offset + 2].try_into().unwrap())
}

#[test]
fn a_kernel_packet_message_is_read_with_its_unaligned_timestamp() {
    let mut buffer = vec![0u32; 256];
    kernel_packet(&mut buffer, 42, b"\x45\x00 an IP packet");
    let message = parsed(&buffer);
    assert_eq!(message.get_queue_num(), QUEUE);
    assert_eq!(message.get_packet_id(), 42);
    assert_eq!(message.get_nfmark(), 0x10);
    assert_eq!(message.get_hw_protocol(), 0x0800);
    assert_eq!(message.get_payload(), b"\x45\x00 an IP packet");
    // Read unaligned (a plain dereference is undefined behaviour, and aborts with debug
    // assertions on).
    assert_eq!(
        message.get_timestamp(),
        Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000))
    );
}

#[test]
fn verdict_messages_carry_the_verdict_the_packet_id_and_the_new_mark() {
    let mut buffer = vec![0u32; 256];
    kernel_packet(&mut buffer, 42, b"packet one");
    let mut first = parsed(&buffer);
    first.set_verdict(Verdict::Repeat);
    first.set_nfmark(0x20);
    let mut second_buffer = vec![0u32; 256];
    kernel_packet(&mut second_buffer, 43, b"packet two");
    let mut second = parsed(&second_buffer);
    second.set_verdict(Verdict::Drop);

    // Two verdicts back to back, as verdict_batch puts them into one datagram.
    let mut out = vec![0u32; 64];
    let mut used = 0;
    let mut starts = Vec::new();
    for message in [&first, &second] {
        starts.push(used * 4);
        unsafe {
            let mut nlmsg = Nlmsg::new(&mut out[used..]);
            put_verdict(&mut nlmsg, message);
            nlmsg.adjust_len();
            used += nlmsg.len;
        }
    }
    let verdict_type = ((NFNL_SUBSYS_QUEUE as u16) << 8) | NFQNL_MSG_VERDICT as u16;
    for (start, id, verdict, mark) in [(starts[0], 42, 4, Some(0x20)), (starts[1], 43, 0, None)] {
        let len = u32::from_ne_bytes(out[start / 4].to_ne_bytes()) as usize;
        assert_eq!(ne16_at(&out, start + 4), verdict_type, "message type");
        assert_eq!(
            ne16_at(&out, start + 6),
            NLM_F_REQUEST as u16,
            "flags: no ack"
        );
        // nfgenmsg: family, version, then the queue number in network order.
        assert_eq!(out[start / 4 + 4].to_ne_bytes()[2..4], QUEUE.to_be_bytes());
        // Attributes: the verdict header (type 2, 12 bytes), then the mark (type 3) if set.
        assert_eq!(ne16_at(&out, start + 20), 12);
        assert_eq!(ne16_at(&out, start + 22), NFQA_VERDICT_HDR as u16);
        assert_eq!(be32_at(&out, start + 24), verdict, "verdict");
        assert_eq!(be32_at(&out, start + 28), id, "packet id");
        match mark {
            Some(mark) => {
                assert_eq!(ne16_at(&out, start + 32), 8);
                assert_eq!(ne16_at(&out, start + 34), NFQA_MARK as u16);
                assert_eq!(be32_at(&out, start + 36), mark, "mark");
                assert_eq!(len, 40);
            }
            None => assert_eq!(len, 32, "no mark attribute when the mark did not change"),
        }
    }
    assert_eq!(starts[1], 40, "the second message follows the first");
    assert_eq!(used * 4, 72);
}

/// `recv` reuses a receive buffer once every message read from it is dropped, and never
/// while a message still holds it. The messages come from a datagram socket pair in place
/// of the kernel's netlink socket.
#[test]
fn receive_buffers_are_reused_only_when_their_messages_are_gone() {
    let mut queue = Queue::open().expect("a netfilter netlink socket");
    let mut pair = [0 as c_int; 2];
    assert_eq!(
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, pair.as_mut_ptr()) },
        0
    );
    unsafe { close(queue.fd) };
    queue.fd = pair[0];
    let send = |id: u32| {
        let mut buffer = vec![0u32; 256];
        let len = kernel_packet(&mut buffer, id, format!("packet {id}").as_bytes());
        let sent = unsafe { libc::send(pair[1], buffer.as_ptr() as _, len * 4, 0) };
        assert_eq!(sent, (len * 4) as isize);
    };
    let buffer_of = |message: &Message| Arc::as_ptr(&message.buffer) as usize;

    for id in 0..3 {
        send(id);
    }
    let held: Vec<Message> = (0..3).map(|_| queue.recv().unwrap()).collect();
    let first_buffers: Vec<usize> = held.iter().map(buffer_of).collect();
    let mut distinct = first_buffers.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "held messages share no buffer");

    // The first message stays; the others are answered.
    let mut held = held.into_iter();
    let kept = held.next().unwrap();
    drop(held);
    for id in 3..6 {
        send(id);
    }
    let later: Vec<Message> = (0..3).map(|_| queue.recv().unwrap()).collect();
    assert_eq!(
        kept.get_payload(),
        b"packet 0",
        "a held message keeps its bytes"
    );
    for (message, id) in later.iter().zip(3..) {
        assert_eq!(message.get_payload(), format!("packet {id}").as_bytes());
        assert_ne!(
            buffer_of(message),
            buffer_of(&kept),
            "a held buffer is not reused"
        );
    }
    let reused = later
        .iter()
        .filter(|m| first_buffers.contains(&buffer_of(m)))
        .count();
    assert!(
        reused >= 2,
        "freed buffers are taken again ({} of 3)",
        reused
    );
    unsafe { close(pair[1]) };
}
