//! Plain HTTP/1.1 over a `TcpStream`, one request a connection, for the
//! tests of the coordinator's HTTP port (metrics, probes, the web
//! interface) and Chromium's DevTools list: what is sent is exactly what
//! the test wrote, headers included.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// Its status code.
    pub status: u16,
    /// Its headers, as `name: value` lines (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `METHOD path` to `host` (host:port) with `headers` and `body`
/// (form-encoded when not empty) and reads the whole response.
pub fn request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect to {host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(head.as_bytes()).expect("send the request");
    read_reply(BufReader::new(s)).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `GET path` with `headers`.
pub fn get(host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(host, "GET", path, headers, "")
}

/// Reads one response: its head, then a body of `Content-Length` bytes,
/// chunked, or up to the close (servers need not close after it).
fn read_reply(mut r: impl BufRead) -> Result<Reply, String> {
    let line = |r: &mut dyn BufRead| -> Result<String, String> {
        let mut l = String::new();
        r.read_line(&mut l).map_err(|e| e.to_string())?;
        Ok(l.trim_end().to_string())
    };
    let status_line = line(&mut r)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let l = line(&mut r)?;
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let io = |e: std::io::Error| e.to_string();
    if reply.header("transfer-encoding") == Some("chunked") {
        loop {
            let size = usize::from_str_radix(&line(&mut r)?, 16).map_err(|e| e.to_string())?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).map_err(io)?;
            if size == 0 {
                break;
            }
            reply.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = reply.header("content-length") {
        let n = n.parse().map_err(|e| format!("content-length {n}: {e}"))?;
        reply.body = vec![0; n];
        r.read_exact(&mut reply.body).map_err(io)?;
    } else {
        r.read_to_end(&mut reply.body).map_err(io)?;
    }
    Ok(reply)
}
