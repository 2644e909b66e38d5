//! HTTP/1.x request head (RFC 9112 §3, §5): the host a request is for.
//!
//! Takes the first bytes a client sent on a TCP connection; answers Found once the whole
//! header section is there (so a second Host header cannot hide behind the first), NotThis
//! when the bytes cannot start an HTTP/1.x request, NeedMore, or an [`HttpError`]. The host
//! comes from the absolute-form or authority-form target when there is one (RFC 9112 §3.2.2,
//! which tells servers to ignore Host then), otherwise from the Host header. Never panics.

use super::{At, Name, Scan};

/// Largest request head read. Most servers refuse heads over 8 KiB (nginx's default
/// large_client_header_buffers is 8k per line); it bounds the bytes buffered per flow.
pub const MAX_HEAD_LEN: usize = 8 * 1024;

/// The methods of RFC 9110 §9. Any other token is a method too (RFC 9110 §9.1: WebDAV's
/// PROPFIND and MKCOL, custom ones, `get` that some servers take for GET), read once its
/// request line is complete and ends in an HTTP/1.x version.
const METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Longest method token read: WebDAV's longest is 16 bytes (VERSION-CONTROL 15,
/// BASELINE-CONTROL 16); servers refuse far shorter unknown ones.
const MAX_METHOD_LEN: usize = 32;

/// What telestrip reads from a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The host the request is for; `None` when there is none or it is an address literal.
    pub host: Option<Name>,
    /// Host header lines seen; more than one makes servers answer 400 (RFC 9112 §3.2).
    pub host_headers: u8,
    /// The name came from the request target rather than the Host header.
    pub host_from_target: bool,
    /// Another name the request also gives (a Host header naming another host than the
    /// absolute-form target, or a second Host header): servers and proxies differ on which
    /// one they use, so a filter judges both.
    pub other_host: Option<Name>,
    /// The IPv6 address literal (`[2001:db8::1]:8080`) the request is for, when it names
    /// no host: an address where a name belongs.
    pub host_v6: Option<std::net::Ipv6Addr>,
}

/// What is wrong with a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("request head longer than {MAX_HEAD_LEN} bytes")]
    TooLarge,
    #[error("request line is not METHOD SP target SP HTTP/1.x")]
    BadRequestLine,
}

/// Scans the first bytes of a client's TCP stream for an HTTP/1.x request head.
pub fn scan_request(stream: &[u8]) -> Result<Scan<Request>, At<HttpError>> {
    let method_len = match stream.iter().position(|&b| b == b' ') {
        Some(len) => len,
        // A method cut by the segment's end (a split is a way to hide the request).
        None if stream.len() <= MAX_METHOD_LEN && stream.iter().all(is_tchar) => {
            return Ok(Scan::NeedMore)
        }
        None => return Ok(Scan::NotThis),
    };
    let method = stream.get(..method_len).unwrap_or(&[]);
    if !METHODS.contains(&method) {
        // Another token: HTTP only if the request line ends in an HTTP/1.x version, so a
        // line of another protocol (SMTP's EHLO, IRC) is not taken for a request.
        if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.iter().all(is_tchar) {
            return Ok(Scan::NotThis);
        }
        let Some(line_end) = stream.iter().position(|&b| b == b'\n') else {
            return Ok(if stream.len() > MAX_HEAD_LEN {
                Scan::NotThis
            } else {
                Scan::NeedMore
            });
        };
        let line = trim_cr(stream.get(..line_end).unwrap_or(&[]));
        let version = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
        if !version.starts_with(b"HTTP/1.") {
            return Ok(Scan::NotThis);
        }
    }
    let Some(head_len) = find_head_end(stream) else {
        return if stream.len() > MAX_HEAD_LEN {
            Err(At::new(HttpError::TooLarge, MAX_HEAD_LEN))
        } else {
            Ok(Scan::NeedMore)
        };
    };
    if head_len > MAX_HEAD_LEN {
        return Err(At::new(HttpError::TooLarge, MAX_HEAD_LEN));
    }
    let head = stream.get(..head_len).unwrap_or(&[]);
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let request_line = lines.next().unwrap_or(&[]);
    let mut parts = request_line.split(|&b| b == b' ');
    let (_, Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(At::new(HttpError::BadRequestLine, 0));
    };
    if !version.starts_with(b"HTTP/1.") {
        return Err(At::new(HttpError::BadRequestLine, 0));
    }
    let mut request = Request {
        host: None,
        host_headers: 0,
        host_from_target: false,
        other_host: None,
        host_v6: None,
    };
    let target_authority = if method == b"CONNECT" {
        Some(target)
    } else {
        absolute_form_authority(target)
    };
    let mut header_v6 = None;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (field, value) = line.split_at(colon);
        if field.eq_ignore_ascii_case(b"host") {
            request.host_headers = request.host_headers.saturating_add(1);
            let value = value.get(1..).unwrap_or(&[]);
            let name = host_name(value);
            if request.host_headers == 1 {
                request.host = name;
                header_v6 = host_v6(value);
            } else if name.is_some() && name != request.host {
                request.other_host = name;
            }
        }
    }
    request.host_v6 = header_v6;
    if let Some(authority) = target_authority {
        let header_host = request.host;
        request.host = host_name(authority);
        request.host_from_target = true;
        request.host_v6 = host_v6(authority).or(header_v6);
        if header_host.is_some() && header_host != request.host {
            request.other_host = header_host;
        }
    }
    Ok(Scan::Found(request))
}

/// Length of the head including the empty line; bare LF line ends are accepted, as most
/// servers do (RFC 9112 §2.2).
fn find_head_end(stream: &[u8]) -> Option<usize> {
    let limit = stream.len().min(MAX_HEAD_LEN + 4);
    let window = stream.get(..limit)?;
    let mut previous_newline: Option<usize> = None;
    for (index, &byte) in window.iter().enumerate() {
        if byte != b'\n' {
            continue;
        }
        if let Some(prev) = previous_newline {
            let between = window.get(prev + 1..index).unwrap_or(&[]);
            if between.is_empty() || between == b"\r" {
                return Some(index + 1);
            }
        }
        previous_newline = Some(index);
    }
    if stream.len() > limit {
        Some(stream.len())
    } else {
        None
    }
}

/// The IPv6 literal of a Host value or authority (`[2001:db8::1]`, `[::1]:8080`; RFC 3986
/// §3.2.2), if it is one.
fn host_v6(value: &[u8]) -> Option<std::net::Ipv6Addr> {
    let inside = value.trim_ascii().strip_prefix(b"[")?;
    let end = inside.iter().position(|&b| b == b']')?;
    std::str::from_utf8(inside.get(..end)?).ok()?.parse().ok()
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(byte: &u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(byte)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `http://host:port/path` → `host:port` (scheme compared case-insensitively).
fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let scheme_end = target.windows(3).position(|w| w == b"://")?;
    let scheme = target.get(..scheme_end)?;
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return None;
    }
    let rest = target.get(scheme_end + 3..)?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    // Drop userinfo (`user@host`), which RFC 9110 §4.2.4 deprecates but clients still send.
    Some(match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => authority.get(at + 1..).unwrap_or(&[]),
        None => authority,
    })
}

/// A Host value (`name`, `name:port`, `[v6]:port`) as a name; `None` for address literals
/// and values that are not host names.
fn host_name(value: &[u8]) -> Option<Name> {
    let value = value.trim_ascii();
    if value.first() == Some(&b'[') {
        return None;
    }
    let host = match value.iter().rposition(|&b| b == b':') {
        Some(colon) if value.get(colon + 1..)?.iter().all(u8::is_ascii_digit) => {
            value.get(..colon)?
        }
        Some(_) => return None,
        None => value,
    };
    Name::from_bytes(host)
}

#[cfg(test)]
mod tests;
