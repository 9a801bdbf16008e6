//! A loopback TCP proxy in front of a test registry that can drop a connection part-way, to show
//! what a client does when the registry goes away mid-transfer. Armed once: the first
//! connection whose traffic in the armed direction reaches the byte count is cut there (or held
//! until the test releases it, so that the test can kill the registry meanwhile). The test waits
//! on the returned channel, not on time.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};

/// Which way the counted bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Client to registry (uploads).
    Up,
    /// Registry to client (downloads).
    Down,
}

/// What happens when the armed count is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Both sides of that connection are shut down at once.
    Cut,
    /// The connection stops moving bytes until [`Proxy::release`], then is shut down.
    Hold,
}

struct Rule {
    flow: Flow,
    bytes: u64,
    action: Action,
    fired: Sender<()>,
}

#[derive(Default)]
struct Shared {
    rule: Mutex<Option<Rule>>,
    released: Mutex<bool>,
    wake: Condvar,
}

/// A running proxy; its threads end with the process (they hold no test state but sockets).
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let ends = [client.try_clone().unwrap(), server.try_clone().unwrap()];
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let ends2 = [client.try_clone().unwrap(), server.try_clone().unwrap()];
                pump(client, server, Flow::Up, Arc::clone(&s), ends);
                pump(s2, c2, Flow::Down, Arc::clone(&s), ends2);
            }
        });
        Proxy { port, shared }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Arms the proxy: the first connection that moves `bytes` bytes in `flow` gets `action`
    /// there. The channel fires when that happened.
    pub fn arm(&self, flow: Flow, bytes: u64, action: Action) -> Receiver<()> {
        let (fired, rx) = channel();
        *self.shared.released.lock().unwrap() = false;
        *self.shared.rule.lock().unwrap() = Some(Rule {
            flow,
            bytes,
            action,
            fired,
        });
        rx
    }

    /// Lets a held connection go: it is shut down (as by a registry that died).
    pub fn release(&self) {
        *self.shared.released.lock().unwrap() = true;
        self.shared.wake.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.release();
    }
}

/// Copies `from` to `to` on a thread, applying the armed rule to this direction's byte count.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    flow: Flow,
    shared: Arc<Shared>,
    ends: [TcpStream; 2],
) {
    std::thread::spawn(move || {
        let mut moved = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let close = || {
            for e in &ends {
                let _ = e.shutdown(Shutdown::Both);
            }
        };
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut take = n;
            let mut hit = None;
            {
                let mut rule = shared.rule.lock().unwrap();
                if let Some(r) = rule.as_ref()
                    && r.flow == flow
                    && moved + n as u64 >= r.bytes
                {
                    take = usize::try_from(r.bytes.saturating_sub(moved)).unwrap_or(n);
                    hit = rule.take();
                }
            }
            if to.write_all(&buf[..take]).is_err() {
                break;
            }
            moved += take as u64;
            if let Some(rule) = hit {
                let _ = to.flush();
                if rule.action == Action::Hold {
                    let _ = rule.fired.send(());
                    let mut released = shared.released.lock().unwrap();
                    while !*released {
                        released = shared.wake.wait(released).unwrap();
                    }
                    close();
                } else {
                    // Said before the close, so that whoever sees the connection end also
                    // finds the signal.
                    let _ = rule.fired.send(());
                    close();
                }
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
