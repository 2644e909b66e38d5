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
