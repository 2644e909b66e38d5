//! Sources: loops that read packets from somewhere and feed them to the engine. Only the
//! offline capture reader exists so far; NFQUEUE and AF_PACKET sources come with the daemon.

pub mod inject;
pub mod nfqueue;
pub mod passive;
pub mod pcap;
