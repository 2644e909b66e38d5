//! Inspect: pure functions from bytes to names. DNS questions and answers, TLS ClientHello
//! SNI (over TCP, and in QUIC Initial packets), HTTP/1.x Host.
//!
//! Every parser keeps four outcomes apart: a name was found ([`Scan::Found`]), the bytes are
//! not this protocol ([`Scan::NotThis`]), more bytes are needed ([`Scan::NeedMore`]), or the
//! message is malformed (`Err`, a small `Copy` error naming what was wrong). None of them
//! panics or allocates on any input; names are copied into a fixed [`Name`] buffer.

pub mod dns;
pub mod gquic;
pub mod http;
pub mod name;
pub mod quic;
mod reader;
pub mod tls;

pub use name::Name;

/// Outcome of scanning a byte stream for one protocol's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan<T> {
    /// The message is complete and parsed.
    Found(T),
    /// The bytes are not this protocol; another parser may try.
    NotThis,
    /// The message has started but is not complete yet.
    NeedMore,
}
