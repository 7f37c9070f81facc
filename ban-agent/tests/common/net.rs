//! TCP in test namespaces: a server that accepts and closes, a connect check, and an HTTP
//! client.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{Netns, sh};

/// TCP listeners on every address of a namespace, accepting and closing connections until
/// dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Netns, ports: &[u16]) -> Self {
        let listeners: Vec<TcpListener> = ns.run(|| {
            let mut listeners = Vec::new();
            for &port in ports {
                for addr in [format!("0.0.0.0:{port}"), format!("[::]:{port}")] {
                    let listener = bind_only(&addr);
                    listener.set_nonblocking(true).expect("nonblocking");
                    listeners.push(listener);
                }
            }
            listeners
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for listener in &listeners {
                    while let Ok((stream, _)) = listener.accept() {
                        drop(stream);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

/// Binds an IPv6 wildcard without also taking the IPv4 port (IPV6_V6ONLY).
fn bind_only(addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().expect("socket address");
    if addr.is_ipv4() {
        return TcpListener::bind(addr).expect("bind IPv4");
    }
    // std has no V6ONLY switch before bind; net.ipv6.bindv6only is per namespace.
    sh(Command::new("sysctl").args(["-qw", "net.ipv6.bindv6only=1"]));
    TcpListener::bind(addr).expect("bind IPv6")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _joined = thread.join();
        }
    }
}

/// Whether a TCP connection from `ns` to `addr` completes within a second.
pub fn connects(ns: &Netns, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("socket address");
    ns.run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// An HTTP response as the client saw it.
pub struct Response {
    pub status: u16,
    pub body: String,
    /// When the whole response had arrived.
    pub at: Instant,
}

/// One HTTP/1.1 request from inside `ns` to `to` (`192.0.2.1:8000`, `[2001:db8::1]:8000`),
/// with `json` as its body when given.
pub fn http(ns: &Netns, to: &str, method: &str, path: &str, json: Option<&str>) -> Response {
    http_with(ns, to, (method, path), &[], json)
}

/// [`http`] with more header lines (`Name: value`).
pub fn http_with(
    ns: &Netns,
    to: &str,
    (method, path): (&str, &str),
    headers: &[&str],
    json: Option<&str>,
) -> Response {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let addr: SocketAddr = to.parse().expect("socket address");
    ns.run(|| {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{method} {path}: cannot connect to {to}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let body = json.unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: {to}\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .expect("send the request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("{method} {path} to {to}: no response: {e}"));
        let at = Instant::now();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path} to {to}: not HTTP: {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Response { status, body, at }
    })
}
