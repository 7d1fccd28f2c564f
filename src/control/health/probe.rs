//! The probes: one HTTP check (`GET path` on a new connection, judged by its status line)
//! or one bare connect, to a TCP address or a unix socket path. I/O only: a probe says what
//! happened; what that means for the server is the threshold's and the scheduler's call.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpStream, UnixStream};

use crate::config::{HealthCheckCfg, ServerAddr, ServerCfg};

/// Largest status line read from a health check response.
const MAX_STATUS_LINE: usize = 1024;

/// Where a server listens, as a probe connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    /// A unix domain stream socket (`addr = "unix:/path"`).
    Unix(PathBuf),
}

impl Target {
    pub fn of(server: &ServerCfg) -> Target {
        match &server.addr {
            ServerAddr::Inet(addr) => Target::Tcp(*addr),
            ServerAddr::Unix(path) => Target::Unix(path.clone()),
        }
    }
}

/// The Host a check sends to `server`: its name as written, or `localhost` for a unix
/// socket (nginx's `$proxy_host` for `unix:` servers; `unix:/path` is no host name, and
/// frameworks that check Host, as Django's ALLOWED_HOSTS, would answer it 400).
pub fn check_host(server: &ServerCfg) -> String {
    match server.addr {
        ServerAddr::Inet(_) => server.name.clone(),
        ServerAddr::Unix(_) => "localhost".into(),
    }
}

/// Why a check failed; the text is what the log says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("timed out")]
    TimedOut,
    #[error("connect refused")]
    Refused,
    #[error("connection reset")]
    Reset,
    #[error("connection closed")]
    Closed,
    #[error("invalid response")]
    Invalid,
    /// A status outside the accepted range.
    #[error("status {0}")]
    Status(u16),
    #[error("{0}")]
    Io(String),
}

impl From<io::Error> for CheckError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => CheckError::Refused,
            io::ErrorKind::ConnectionReset => CheckError::Reset,
            _ => CheckError::Io(e.to_string()),
        }
    }
}

/// One connection to a target, whichever its kind.
enum ProbeConn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ProbeConn {
    async fn open(target: &Target) -> io::Result<ProbeConn> {
        Ok(match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect_addr(*addr).await?;
                let _ = s.set_nodelay(true);
                ProbeConn::Tcp(s)
            }
            Target::Unix(path) => ProbeConn::Unix(UnixStream::connect(path).await?),
        })
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> io::Result<()> {
        match self {
            ProbeConn::Tcp(s) => s.write_all(buf).await.0.map(drop),
            ProbeConn::Unix(s) => s.write_all(buf).await.0.map(drop),
        }
    }

    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            ProbeConn::Tcp(s) => s.read(buf).await,
            ProbeConn::Unix(s) => s.read(buf).await,
        }
    }
}

/// One active check: `GET path` on a new connection, judged by the status line. `timeout`
/// covers connect, write and reading the status line.
pub async fn http_check(
    target: &Target,
    host: &str,
    hc: &HealthCheckCfg,
) -> Result<(), CheckError> {
    let status = monoio::time::timeout(hc.timeout, status_of(target, host, &hc.path))
        .await
        .map_err(|_| CheckError::TimedOut)??;
    if (hc.status.0..=hc.status.1).contains(&status) {
        Ok(())
    } else {
        Err(CheckError::Status(status))
    }
}

/// Whether a connection to `target` is accepted within `timeout` (the recovery probe of a
/// passively ejected server).
pub async fn connect_probe(target: &Target, timeout: Duration) -> bool {
    matches!(
        monoio::time::timeout(timeout, ProbeConn::open(target)).await,
        Ok(Ok(_))
    )
}

/// The request a check sends.
fn check_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ringlb-health\r\n\r\n"
    )
    .into_bytes()
}

async fn status_of(target: &Target, host: &str, path: &str) -> Result<u16, CheckError> {
    let mut conn = ProbeConn::open(target).await?;
    conn.write_all(check_request(host, path)).await?;
    let mut head: Vec<u8> = Vec::with_capacity(256);
    let mut buf = Vec::with_capacity(512);
    loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            return parse_status_line(&head[..end]).ok_or(CheckError::Invalid);
        }
        if head.len() > MAX_STATUS_LINE {
            return Err(CheckError::Invalid);
        }
        buf.clear();
        let (r, b) = conn.read(buf).await;
        buf = b;
        match r? {
            0 => return Err(CheckError::Closed),
            _ => head.extend_from_slice(&buf),
        }
    }
}

/// `HTTP/1.x SSS ...` -> SSS.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/2 200"), None);
        assert_eq!(parse_status_line(b"garbage"), None);
    }

    #[test]
    fn unix_servers_are_checked_as_localhost() {
        let mut s = crate::upstream::bench_support::server(8001, 1);
        assert_eq!(check_host(&s), "127.0.0.1:8001");
        s.addr = ServerAddr::Unix("/run/app.sock".into());
        s.name = "unix:/run/app.sock".into();
        assert_eq!(check_host(&s), "localhost");
        assert_eq!(Target::of(&s), Target::Unix("/run/app.sock".into()));
    }

    #[test]
    fn request_format() {
        assert_eq!(
            check_request("backend1:8001", "/health"),
            b"GET /health HTTP/1.1\r\nHost: backend1:8001\r\nConnection: close\r\nUser-Agent: ringlb-health\r\n\r\n"
        );
    }

    fn check_cfg() -> HealthCheckCfg {
        HealthCheckCfg {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            fails: 1,
            passes: 1,
            status: (200, 399),
        }
    }

    /// Serves one connection per item of `replies` on a unix socket, each answered with
    /// that reply after reading the request head.
    fn unix_server(replies: Vec<&'static [u8]>) -> (PathBuf, std::thread::JoinHandle<()>) {
        let dir = std::env::temp_dir().join(format!("ringlb-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("s{}.sock", replies.len()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            for reply in replies {
                let (mut s, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 256];
                while !head.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut b).unwrap();
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&b[..n]);
                }
                let _ = s.write_all(reply);
            }
        });
        (path, t)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn probes_reach_a_unix_socket() {
        let (path, server) = unix_server(vec![
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 503 Busy\r\n\r\n",
            b"",
        ]);
        let target = Target::Unix(path.clone());
        let hc = check_cfg();
        block_on(async {
            assert_eq!(http_check(&target, "localhost", &hc).await, Ok(()));
            assert_eq!(
                http_check(&target, "localhost", &hc).await,
                Err(CheckError::Status(503))
            );
            assert_eq!(
                http_check(&target, "localhost", &hc).await,
                Err(CheckError::Closed)
            );
        });
        server.join().unwrap();
        std::fs::remove_file(&path).unwrap();
        let gone = Target::Unix(path);
        block_on(async {
            assert!(!connect_probe(&gone, Duration::from_secs(1)).await);
            assert!(http_check(&gone, "localhost", &hc).await.is_err());
        });
    }

    #[test]
    fn probes_reach_a_tcp_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::Tcp(listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 512];
            let _ = s.read(&mut b).unwrap();
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
            listener
        });
        block_on(async {
            assert_eq!(http_check(&target, "t", &check_cfg()).await, Ok(()));
        });
        let listener = server.join().unwrap();
        block_on(async { assert!(connect_probe(&target, Duration::from_secs(1)).await) });
        drop(listener);
    }
}
