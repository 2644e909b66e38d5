//! Passive source: frames from a capture interface (AF_PACKET via `pnet_datalink`: a
//! mirror/SPAN port or the gateway's own LAN side), fed to the same engine. Nothing is held
//! back: matches are logged, and with `passive_resets` a flow whose rule blocks gets a TCP
//! RST towards both ends, built from the packet that decided it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::PacketBuilder;
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};

use crate::engine::{Engine, FlowEvent, FlowStatus, PacketAction};
use crate::source::SourceStats;
use crate::stats::bump;
use crate::wire::{self, LinkType, Packet};

/// A capture channel on one interface.
pub struct Capture {
    pub interface: String,
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
}

/// Opens an AF_PACKET channel on `interface` (needs CAP_NET_RAW).
pub fn open(interface: &str) -> io::Result<Capture> {
    let found = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface {interface}"))
        })?;
    let config = pnet_datalink::Config {
        // Wake up now and then to notice a stop request.
        read_timeout: Some(Duration::from_millis(200)),
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(&found, config)? {
        Channel::Ethernet(tx, rx) => Ok(Capture {
            interface: interface.to_string(),
            tx,
            rx,
        }),
        _ => Err(io::Error::other("not an Ethernet channel")),
    }
}

/// Runs one capture until `stop` is set. `resets`: answer blocked TCP flows with RSTs.
pub fn run(
    engine: &Engine,
    mut capture: Capture,
    resets: bool,
    events_out: &SyncSender<FlowEvent>,
    stats: &SourceStats,
    stop: &AtomicBool,
) {
    let mut worker = engine.worker();
    let mut events = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let frame = match capture.rx.next() {
            Ok(frame) => frame.to_vec(),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            Err(_) => {
                bump(&stats.errors);
                continue;
            }
        };
        bump(&stats.packets);
        worker.refresh_rules();
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let verdict = worker.process(LinkType::Ethernet, &frame, time, &mut events);
        // Every packet of a blocked flow triggers resets built from its own sequence numbers:
        // endpoints accept only a RST at exactly the next expected sequence (RFC 5961 §3),
        // and a flow keeps moving while the first resets are in flight.
        if resets && verdict.flow == FlowStatus::Decided && verdict.action != PacketAction::Accept {
            if let Some(sent) = send_resets(&mut capture, &frame) {
                stats.resets_sent.fetch_add(sent, Ordering::Relaxed);
            }
        }
        crate::source::nfqueue::forward_events(&mut events, events_out, stats);
    }
}

/// Sends a RST to each end of the TCP packet in `frame`: to its receiver as if from its
/// sender, at the sequence number just after the packet, and to its sender as if from its
/// receiver, at the packet's acknowledgment number. Returns how many were sent.
fn send_resets(capture: &mut Capture, frame: &[u8]) -> Option<u64> {
    let packet: Packet<'_> = wire::parse(LinkType::Ethernet, frame).ok()?;
    let tcp = packet.tcp?;
    if tcp.rst {
        return None;
    }
    let (client_mac, server_mac) = match frame {
        [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, ..] => (
            [*s0, *s1, *s2, *s3, *s4, *s5],
            [*d0, *d1, *d2, *d3, *d4, *d5],
        ),
        _ => return None,
    };
    let client_next = tcp.seq.wrapping_add(packet.payload.len() as u32);
    let server_next = tcp.ack_number;
    let mut sent = 0;
    // To the server: as if from the client, at the client's next sequence number.
    let to_server = rst(
        client_mac,
        server_mac,
        packet.src,
        packet.dst,
        packet.src_port,
        packet.dst_port,
        client_next,
    )?;
    // To the client: as if from the server, at the server's next sequence number.
    let to_client = rst(
        server_mac,
        client_mac,
        packet.dst,
        packet.src,
        packet.dst_port,
        packet.src_port,
        server_next,
    )?;
    for reset in [to_server, to_client] {
        if let Some(Ok(())) = capture.tx.send_to(&reset, None) {
            sent += 1;
        }
    }
    Some(sent)
}

#[allow(clippy::too_many_arguments)]
fn rst(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    src_port: u16,
    dst_port: u16,
    seq: u32,
) -> Option<Vec<u8>> {
    use std::net::IpAddr::{V4, V6};
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ip = match (src, dst) {
        (V4(s), V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (V6(s), V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => return None,
    };
    let builder = ip.tcp(src_port, dst_port, seq, 0).rst();
    let mut frame = Vec::with_capacity(builder.size(0));
    builder.write(&mut frame, &[]).ok()?;
    Some(frame)
}
