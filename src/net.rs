//! Outgoing HTTP/1.1 connections: the client's connection to the broker and
//! the broker's connection to each subscriber endpoint.
//!
//! Owns a socket and its buffers, and keeps every wait inside a deadline. It
//! never interprets what it carries: framing is [`crate::http`]'s job.

use crate::deadline::{self, Socket};
use crate::http::{self, HttpError, Limits, PLAIN_ACCEPTED, Response};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Read side of a socket whose every read ends by a deadline.
struct DeadlineReader {
    socket: Socket,
    deadline: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read_by(buf, self.deadline)
    }
}

/// Write side of a socket whose every write ends within a timeout.
struct TimeoutWriter {
    socket: Socket,
    timeout: Duration,
}

impl Write for TimeoutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.write_by(buf, deadline::after(self.timeout))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A response's status, and whether the connection stays open after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) status: u16,
    pub(crate) keep_alive: bool,
}

/// One persistent HTTP/1.1 connection to a peer.
pub(crate) struct Connection {
    reader: BufReader<DeadlineReader>,
    writer: BufWriter<TimeoutWriter>,
    host: String,
    timeout: Duration,
    /// `Bearer TOKEN` for every request, if the broker wants a token.
    authorization: Option<String>,
}

impl Connection {
    /// Connects within `timeout`; later writes and each response read are
    /// bounded by the same `timeout`.
    pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        // An optimization: a stack without it still serves.
        let _ = stream.set_nodelay(true);
        let reader = DeadlineReader {
            socket: Socket::new(stream.try_clone()?),
            deadline: deadline::after(timeout),
        };
        let writer = TimeoutWriter {
            socket: Socket::new(stream),
            timeout,
        };
        Ok(Connection {
            reader: BufReader::with_capacity(4 * 1024, reader),
            writer: BufWriter::with_capacity(16 * 1024, writer),
            host: addr.to_string(),
            timeout,
            authorization: None,
        })
    }

    /// Whether the peer has closed (or broken) this idle connection, so that a
    /// request written now would be lost. Reads nothing that matters: an idle
    /// HTTP connection has nothing to read.
    pub(crate) fn is_stale(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref().socket.get_ref();
        if stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut probe = [0u8; 1];
        let stale =
            !matches!(stream.peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        stale || stream.set_nonblocking(false).is_err()
    }

    /// Whether bytes of a response have already been read from the socket.
    pub(crate) fn has_buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// Another handle on the socket, for a writer of its own.
    pub(crate) fn try_clone_stream(&self) -> io::Result<TcpStream> {
        self.writer.get_ref().socket.get_ref().try_clone()
    }

    /// Buffers one request; [`Connection::flush`] sends what is buffered.
    pub(crate) fn send(
        &mut self,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> io::Result<()> {
        self.send_with(target, content_type, None, body)
    }

    /// [`Connection::send`] with one more header (`Message-Id` on a qos 1
    /// delivery).
    pub(crate) fn send_with(
        &mut self,
        target: &str,
        content_type: Option<&str>,
        extra: Option<(&str, &str)>,
        body: &[u8],
    ) -> io::Result<()> {
        let Connection {
            writer,
            host,
            authorization,
            ..
        } = self;
        let auth = authorization.as_deref();
        write_post(writer, host, auth, target, content_type, extra, body)
    }

    /// Sends `Authorization: Bearer TOKEN` with every request from now on.
    pub(crate) fn authorize(&mut self, token: Option<&str>) {
        self.authorization = token.map(|t| format!("Bearer {t}"));
    }

    /// Writes a request as [`Connection::send`] would, to `w`.
    pub(crate) fn encode(
        &self,
        w: &mut impl Write,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> io::Result<()> {
        let auth = self.authorization.as_deref();
        write_post(w, &self.host, auth, target, content_type, None, body)
    }

    /// Sends everything buffered.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// What a delivery needs of the next response, which must arrive
    /// within the timeout from now: its status, and whether the connection
    /// stays open. The answer our client and most subscribers give, a
    /// plain `202 Accepted`, is recognized by its bytes without parsing.
    pub(crate) fn read_status(&mut self, limits: &Limits) -> Result<Status, HttpError> {
        // Already buffered, the plain answer needs no wait, so no deadline.
        if !self.reader.buffer().starts_with(PLAIN_ACCEPTED) {
            self.reader.get_mut().deadline = deadline::after(self.timeout);
            let available = loop {
                match self.reader.fill_buf() {
                    Ok(available) => break available,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            };
            if !available.starts_with(PLAIN_ACCEPTED) {
                // Anything else (or a plain answer not all here yet) is parsed.
                let response = http::read_response(&mut self.reader, limits)?;
                return Ok(Status {
                    status: response.status,
                    keep_alive: response.keep_alive,
                });
            }
        }
        self.reader.consume(PLAIN_ACCEPTED.len());
        Ok(Status {
            status: 202,
            keep_alive: true,
        })
    }

    /// Reads one response, which must arrive within the timeout from now.
    pub(crate) fn read_response(&mut self, limits: &Limits) -> Result<Response, HttpError> {
        self.read_response_by(limits, deadline::after(self.timeout))
    }

    /// Reads the next response, which must have arrived by `deadline`.
    pub(crate) fn read_response_by(
        &mut self,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        self.reader.get_mut().deadline = deadline;
        http::read_response(&mut self.reader, limits)
    }
}

/// Whether `e` says the peer closed or reset the connection: on a reused
/// connection, the sign that it had closed it while idle, before it saw our
/// request.
pub(crate) fn is_peer_close(e: &io::Error) -> bool {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Limits for reading a response: small, since answers here carry at most a
/// short reason.
pub(crate) fn response_limits() -> Limits {
    Limits {
        max_body: 64 * 1024,
        ..Limits::default()
    }
}

/// The address that reaches a listener bound to `addr` from this host: the
/// loopback address for a listener on every interface. Used to wake a
/// blocking `accept` with a connection of our own.
pub(crate) fn loopback_for(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// A `POST` with the optional `Content-Type` and `Authorization` headers.
fn write_post(
    w: &mut impl Write,
    host: &str,
    authorization: Option<&str>,
    target: &str,
    content_type: Option<&str>,
    extra: Option<(&str, &str)>,
    body: &[u8],
) -> io::Result<()> {
    let mut headers = [("", ""); 3];
    let mut n = 0;
    for (name, value) in [
        ("Content-Type", content_type),
        ("Authorization", authorization),
    ] {
        if let Some(value) = value {
            headers[n] = (name, value);
            n += 1;
        }
    }
    if let Some(header) = extra {
        headers[n] = header;
        n += 1;
    }
    http::write_request(w, "POST", target, host, &headers[..n], body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn the_plain_answer_reads_as_the_parser_reads_it() {
        let parsed = http::read_response(&mut &PLAIN_ACCEPTED[..], &response_limits()).unwrap();
        assert_eq!((parsed.status, parsed.keep_alive), (202, true));
        assert!(parsed.body.is_empty());
    }

    #[test]
    fn statuses_of_plain_and_other_answers_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut answers = PLAIN_ACCEPTED.repeat(2);
            answers.extend_from_slice(b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 2\r\n\r\nok");
            // A plain answer cut in two, the rest in a second write (which
            // the reader may or may not find joined to the first: either
            // way the statuses are the same).
            answers.extend_from_slice(&PLAIN_ACCEPTED[..10]);
            s.write_all(&answers).unwrap();
            let mut rest = PLAIN_ACCEPTED[10..].to_vec();
            rest.extend_from_slice(
                b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            );
            s.write_all(&rest).unwrap();
            // Holds the socket until the reader is done.
            let _ = s.read(&mut [0; 1]);
        });
        let mut conn = Connection::connect(addr, Duration::from_secs(5)).unwrap();
        let limits = response_limits();
        let got: Vec<Status> = (0..5).map(|_| conn.read_status(&limits).unwrap()).collect();
        let kept = |status| Status {
            status,
            keep_alive: true,
        };
        let closing = Status {
            status: 202,
            keep_alive: false,
        };
        assert_eq!(got, [kept(202), kept(202), kept(200), kept(202), closing]);
        drop(conn);
        peer.join().unwrap();
    }
}
