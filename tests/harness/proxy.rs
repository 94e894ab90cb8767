//! A TCP proxy in front of the relay that cuts connections mid-request: the network
//! failing under a client. Which connections it cuts, and where, comes from a seeded
//! generator, so a failing run can be repeated.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the proxy does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Forward everything.
    Pass,
    /// Forward the first half of the first request chunk, then cut: the relay sees a
    /// truncated request.
    CutMidRequest,
    /// Forward the request, then cut as the answer starts: the relay did the work,
    /// the client never hears of it.
    CutBeforeAnswer,
}

struct Shared {
    upstream: String,
    cut_percent: AtomicU32,
    rng: Mutex<u64>,
    stopped: AtomicBool,
    cut_requests: AtomicU64,
    cut_answers: AtomicU64,
}

impl Shared {
    fn fate(&self) -> Fate {
        let mut state = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        // xorshift64: deterministic for a seed.
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let roll = (*state % 200) as u32;
        let cut = self.cut_percent.load(Ordering::Relaxed);
        if roll >= 2 * cut {
            Fate::Pass
        } else if roll.is_multiple_of(2) {
            Fate::CutMidRequest
        } else {
            Fate::CutBeforeAnswer
        }
    }
}

/// A running proxy; stops accepting when dropped.
pub struct CuttingProxy {
    shared: Arc<Shared>,
    /// `http://127.0.0.1:PORT`, to give clients instead of the relay's URL.
    pub url: String,
}

impl CuttingProxy {
    /// Proxies to `upstream_url` (`http://host:port`), cutting `cut_percent` % of the
    /// connections (half mid-request, half before the answer).
    pub fn start(upstream_url: &str, cut_percent: u32, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let shared = Arc::new(Shared {
            upstream: upstream_url.trim_start_matches("http://").to_owned(),
            cut_percent: AtomicU32::new(cut_percent),
            rng: Mutex::new(seed.max(1)),
            stopped: AtomicBool::new(false),
            cut_requests: AtomicU64::new(0),
            cut_answers: AtomicU64::new(0),
        });
        let accept = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                if accept.stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let shared = Arc::clone(&accept);
                thread::spawn(move || serve(&shared, client));
            }
        });
        Self { shared, url }
    }

    /// Changes the share of connections cut from now on.
    pub fn set_cut_percent(&self, percent: u32) {
        self.shared.cut_percent.store(percent, Ordering::Relaxed);
    }

    /// Connections cut so far: `(mid-request, before the answer)`.
    pub fn cuts(&self) -> (u64, u64) {
        (
            self.shared.cut_requests.load(Ordering::Relaxed),
            self.shared.cut_answers.load(Ordering::Relaxed),
        )
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn cut(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

fn serve(shared: &Shared, client: TcpStream) {
    let Ok(upstream) = TcpStream::connect(&shared.upstream) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let fate = shared.fate();
    let (Ok(mut client_r), Ok(mut upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (client_w, upstream_r) = (client, upstream);
    let cut_requests = &shared.cut_requests;
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match client_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if fate == Fate::CutMidRequest {
                    let _ = upstream_w.write_all(&buf[..n / 2]);
                    cut_requests.fetch_add(1, Ordering::Relaxed);
                    cut(&client_r, &upstream_w);
                    break;
                }
                if upstream_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = upstream_w.shutdown(Shutdown::Write);
        });
        let mut upstream_r = upstream_r;
        let mut client_w = client_w;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match upstream_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if fate == Fate::CutBeforeAnswer {
                shared.cut_answers.fetch_add(1, Ordering::Relaxed);
                cut(&client_w, &upstream_r);
                break;
            }
            if client_w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_w.shutdown(Shutdown::Write);
    });
}
