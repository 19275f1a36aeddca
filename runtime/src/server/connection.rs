//! One client connection's byte stream, as hyper sees it, with the limits
//! hyper does not apply by itself:
//! - **idle timeout**: no byte of a request within `idle` of the connection
//!   opening or of the previous response closes the connection quietly;
//! - **header timeout**: a request head must be complete within `header`
//!   of its first byte (slow-header clients), or the client gets a `408`
//!   and the connection closes;
//! - **JSON refusals**: hyper answers a request it cannot parse (400, 414,
//!   431) on its own, with an empty body; those answers are replaced by the
//!   API's JSON error.
//!
//! The end of a head is found by looking for its empty line. That is only
//! used for the timers: hyper still parses every request itself.
//!
//! Under TLS the stream wraps the decrypted one, so the same rules hold for
//! HTTP/1.1 over TLS. HTTP/2 has no text heads to follow: there, any frame
//! from the client restarts the idle timer, and nothing else applies (hyper
//! bounds the header block with `max_header_list_size`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub idle: Duration,
    pub header: Duration,
    /// What the 431 answer says the limit is.
    pub max_header_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// Some of a request head is in, not all of it.
    Head,
    /// The head is in: hyper reads the body and the API answers.
    Busy,
}

pub(super) struct GuardedStream<S = TcpStream> {
    stream: S,
    timeouts: Timeouts,
    /// Only the idle timer applies (see the module's comment).
    http2: bool,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    /// The current head line has no byte yet (CR aside).
    line_empty: bool,
    /// A non-empty line of the head has been seen (empty lines before the
    /// request line are allowed).
    head_started: bool,
    /// A JSON answer written in place of one of hyper's, and how much of it
    /// is written.
    replacement: Option<(Vec<u8>, usize)>,
}

/// A best-effort write that does not wait: the 408 is written as the
/// connection is given up on.
pub(super) trait WriteNow {
    fn write_now(&mut self, bytes: &[u8]);
}

impl WriteNow for TcpStream {
    fn write_now(&mut self, bytes: &[u8]) {
        let _ = self.try_write(bytes);
    }
}

impl WriteNow for tokio_rustls::server::TlsStream<TcpStream> {
    fn write_now(&mut self, bytes: &[u8]) {
        use std::io::Write;
        struct NonBlocking<'a>(&'a TcpStream);
        impl Write for NonBlocking<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.try_write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (tcp, tls) = self.get_mut();
        let _ = tls.writer().write_all(bytes);
        while tls.wants_write() {
            if !matches!(tls.write_tls(&mut NonBlocking(tcp)), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

impl<S> GuardedStream<S> {
    pub(super) fn new(stream: S, timeouts: Timeouts) -> Self {
        Self::with_protocol(stream, timeouts, false)
    }

    /// For an HTTP/2 connection (negotiated by ALPN), only the idle timer.
    pub(super) fn http2(stream: S, timeouts: Timeouts) -> Self {
        Self::with_protocol(stream, timeouts, true)
    }

    fn with_protocol(stream: S, timeouts: Timeouts, http2: bool) -> Self {
        Self {
            stream,
            timeouts,
            http2,
            phase: Phase::Idle,
            deadline: Box::pin(tokio::time::sleep(timeouts.idle)),
            line_empty: true,
            head_started: false,
            replacement: None,
        }
    }

    /// Follows the bytes read through the phases.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.phase == Phase::Busy {
            return;
        }
        if self.http2 {
            let deadline = Instant::now() + self.timeouts.idle;
            self.deadline.as_mut().reset(deadline);
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.line_empty = true;
            self.head_started = false;
            let deadline = Instant::now() + self.timeouts.header;
            self.deadline.as_mut().reset(deadline);
        }
        for &byte in bytes {
            match byte {
                b'\n' if self.line_empty && self.head_started => {
                    self.phase = Phase::Busy;
                    return;
                }
                b'\n' => self.line_empty = true,
                b'\r' => {}
                _ => {
                    self.line_empty = false;
                    self.head_started = true;
                }
            }
        }
    }

    /// `bytes` of a response are being written: unless it is an interim
    /// `100 Continue` (the body is still to come), the next request starts
    /// from idle.
    fn responding(&mut self, bytes: &[u8], cx: &mut Context<'_>) {
        if !self.http2 && !bytes.starts_with(b"HTTP/1.1 1") {
            self.responded(cx);
        }
    }

    /// The timer is polled here, as hyper may already be waiting on a read
    /// it started while busy (when the timer did not count).
    fn responded(&mut self, cx: &mut Context<'_>) {
        if self.phase != Phase::Idle {
            self.phase = Phase::Idle;
            let deadline = Instant::now() + self.timeouts.idle;
            self.deadline.as_mut().reset(deadline);
            let _ = self.deadline.as_mut().poll(cx);
        }
    }
}

impl<S: AsyncWrite + Unpin> GuardedStream<S> {
    /// Writes what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            let n =
                std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes hyper's bodiless error answer at the start of `buf`, if that is
    /// what it is, and queues the JSON one instead. Returns the bytes taken.
    fn replace(&mut self, buf: &[u8]) -> Option<usize> {
        if self.http2 {
            return None;
        }
        let (status, head_len) = bare_error_head(buf)?;
        self.replacement = Some((refusal(status, self.timeouts.max_header_bytes), 0));
        Some(head_len)
    }
}

/// The status and length of a response head hyper wrote for a request it
/// could not parse: a 4xx with no content type and an empty body. The
/// API's own answers always carry a content type.
fn bare_error_head(buf: &[u8]) -> Option<(u16, usize)> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 4")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 4"))?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = buf[..end].to_ascii_lowercase();
    let contains = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    if contains(b"\r\ncontent-type:") || !contains(b"\r\ncontent-length: 0\r\n") {
        return None;
    }
    let digits = rest.get(..2)?;
    let status = std::str::from_utf8(digits).ok()?.parse::<u16>().ok()? + 400;
    Some((status, end))
}

/// A complete JSON answer that closes the connection.
pub(super) fn refusal(status: u16, max_header_bytes: usize) -> Vec<u8> {
    let (reason, code, message) = match status {
        408 => (
            "Request Timeout",
            "request_timeout",
            "the request head did not arrive in time".to_owned(),
        ),
        414 => (
            "URI Too Long",
            "uri_too_long",
            "the request target is too long".to_owned(),
        ),
        431 => (
            "Request Header Fields Too Large",
            "headers_too_large",
            format!("request headers are limited to {max_header_bytes} bytes"),
        ),
        503 => (
            "Service Unavailable",
            "too_many_connections",
            "the server has as many connections open as it takes; try again shortly".to_owned(),
        ),
        _ => (
            "Bad Request",
            "bad_request",
            "the request is not valid HTTP/1.1".to_owned(),
        ),
    };
    let body = serde_json::json!({
        "error": {"code": code, "message": message, "field": null}
    })
    .to_string();
    let retry = if status == 503 {
        "retry-after: 1\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n{retry}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncRead + WriteNow + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if this.phase == Phase::Busy || this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if this.phase == Phase::Idle {
                    // A quiet close, as at the end of any keep-alive.
                    return Poll::Ready(Ok(()));
                }
                // Best effort: a slow client may not read it either.
                this.stream
                    .write_now(&refusal(408, this.timeouts.max_header_bytes));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request head did not arrive in time",
                )))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        if this.phase != Phase::Idle
            && let Some(taken) = this.replace(buf)
        {
            this.responded(cx);
            return Poll::Ready(Ok(taken));
        }
        this.responding(buf, cx);
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        if this.phase != Phase::Idle
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(taken) = this.replace(first)
        {
            this.responded(cx);
            return Poll::Ready(Ok(taken));
        }
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.responding(first, cx);
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_error_answers_are_replaced() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(bare_error_head(bare), Some((431, bare.len())));
        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_head(bad).map(|(s, _)| s), Some(400));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_head(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_head(ok), None);
        let body = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(bare_error_head(body), None);
    }

    #[test]
    fn refusals_are_complete_json_answers() {
        let text = String::from_utf8(refusal(431, 32768)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "headers_too_large");
        assert!(json["error"]["message"].as_str().unwrap().contains("32768"));
    }
}
