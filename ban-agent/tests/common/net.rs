//! TCP in test namespaces: a server that accepts and closes, and a connect check.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
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
