//! Inspect: pure functions from bytes to names. DNS questions and answers, TLS ClientHello
//! SNI (over TCP, and in QUIC Initial packets), HTTP/1.x Host.
//!
//! Every parser keeps four outcomes apart: a name was found ([`Scan::Found`]), the bytes are
//! not this protocol ([`Scan::NotThis`]), more bytes are needed ([`Scan::NeedMore`]), or the
//! message is malformed (`Err`, a small `Copy` error naming what was wrong). None of them
//! panics or allocates on any input; names are copied into a fixed [`Name`] buffer.

/// A parser's error and where it found it: the byte offset in the message it was reading
/// (the DNS message, the TLS handshake message, the QUIC datagram or CRYPTO stream, the
/// HTTP request head, the CHLO), when known. Small and `Copy` like the errors it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At<E> {
    pub error: E,
    pub offset: Option<u32>,
}

impl<E> At<E> {
    pub fn new(error: E, offset: usize) -> Self {
        At {
            error,
            offset: u32::try_from(offset).ok(),
        }
    }
}

/// An error whose place is not known.
impl<E> From<E> for At<E> {
    fn from(error: E) -> Self {
        At {
            error,
            offset: None,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for At<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} at byte {offset}", self.error),
            None => self.error.fmt(f),
        }
    }
}

impl<E: std::error::Error> std::error::Error for At<E> {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_say_where() {
        // DNS: the question's name is a compression pointer forward, at byte 12.
        let mut message = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(&[0xc0, 0x20, 0, 1, 0, 1]);
        let error = dns::Message::parse(&message)
            .unwrap()
            .first_question()
            .unwrap_err();
        assert_eq!(error, At::new(dns::DnsError::ForwardPointer, 12));
        assert_eq!(
            error.to_string(),
            "compression pointer does not point backwards at byte 12"
        );
        // TLS: the second record claims more than 2^14 bytes; it starts at byte 10.
        let stream = [22, 3, 1, 0, 5, 1, 0, 1, 0, 3, 22, 3, 1, 0x40, 0x01];
        let error = tls::scan_client_hello(&stream, &mut Vec::new()).unwrap_err();
        assert_eq!(error, At::new(tls::TlsError::RecordTooLong, 10));
        // TLS: a ClientHello cut inside its random: version and random are read as one
        // field, from byte 4 of the handshake message.
        let hello = [1, 0, 0, 10, 3, 3, 7, 7, 7, 7, 7, 7, 7, 7];
        let error = tls::scan_handshake(&hello).unwrap_err();
        assert_eq!(error, At::new(tls::TlsError::Truncated("random"), 4));
    }
}
