//! A TCP proxy whose faults the test controls: pass, cut, drop, delay.
//!
//! Every accepted connection gets two threads, one per direction. A mode
//! applies to each chunk as it is read; bytes already queued see a change
//! within about [`TICK`]; `cut` shuts the sockets down at once.
//!
//! Under [`Proxy::drop_traffic`] bytes are discarded, which a real TCP stream
//! cannot do: so that no endpoint reads on past a hole, `heal` (or `delay`)
//! closes the connections that lost bytes, and the endpoints reconnect. Delayed bytes wait in
//! a queue of at most [`QUEUE_CAP`] bytes per direction; when it is full the
//! proxy stops reading, and TCP flow control pushes back on the sender.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The longest a proxy thread with work pending (queued bytes, a full
/// socket) waits before it looks at the mode again.
pub const TICK: Duration = Duration::from_millis(10);
/// How long an idle reader blocks. Nothing depends on it: cut, heal of a
/// lossy connection and drop of the proxy shut the sockets down, which
/// wakes it, and a mode is applied to each chunk as it is read.
const IDLE: Duration = Duration::from_millis(100);
/// Bytes queued per direction (delay) before the proxy stops reading.
pub const QUEUE_CAP: usize = 1 << 20;
const CHUNK: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Pass,
    Cut,
    Drop,
    Delay(Duration),
}

/// An open connection, as the control side sees it.
struct Conn {
    id: u64,
    client: TcpStream,
    upstream: TcpStream,
    /// Some bytes were discarded: the stream is no longer intact.
    lossy: Arc<AtomicBool>,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

struct State {
    mode: Mode,
    conns: Vec<Conn>,
    next_id: u64,
}

struct Shared {
    target: SocketAddr,
    stop: AtomicBool,
    dropped: AtomicU64,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mode(&self) -> Mode {
        self.lock().mode
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts `n` discarded bytes of a connection.
    fn discard(&self, lossy: &AtomicBool, n: usize) {
        lossy.store(true, Ordering::Relaxed);
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1:<free port>, forwards every accepted connection
    /// to `target`. A connection that cannot reach `target` is closed.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind");
        listener
            .set_nonblocking(true)
            .expect("proxy: non-blocking listener");
        let addr = listener.local_addr().expect("proxy: local addr");
        let shared = Arc::new(Shared {
            target,
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            state: Mutex::new(State {
                mode: Mode::Pass,
                conns: Vec::new(),
                next_id: 0,
            }),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("proxy-{}", addr.port()))
                .spawn(move || accept_loop(listener, shared))
                .expect("proxy: spawn")
        };
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Pass traffic (the default). Connections that lost bytes under
    /// [`Proxy::drop_traffic`] are closed: a TCP stream cannot have a hole
    /// in it, and the endpoints must not read the bytes after one as if
    /// nothing happened. Connections that lost nothing carry on.
    pub fn heal(&self) {
        self.set_passing(Mode::Pass);
    }

    /// Close every open connection now and refuse (accept, then close) new
    /// ones until healed.
    pub fn cut(&self) {
        let mut st = self.shared.lock();
        st.mode = Mode::Cut;
        for conn in st.conns.drain(..) {
            conn.close();
        }
    }

    /// Keep connections open but silently discard bytes in both directions
    /// (including bytes already queued by a delay).
    pub fn drop_traffic(&self) {
        self.shared.lock().mode = Mode::Drop;
    }

    /// Delay every chunk by `d` in both directions (order preserved). Bytes
    /// already queued are due `d` after they arrived; `heal` releases them
    /// at once. Like `heal`, closes connections that lost bytes.
    pub fn delay(&self, d: Duration) {
        self.set_passing(Mode::Delay(d));
    }

    /// Bytes discarded so far by [`Proxy::drop_traffic`], both directions.
    pub fn dropped_bytes(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }

    fn set_passing(&self, mode: Mode) {
        let mut st = self.shared.lock();
        st.mode = mode;
        st.conns.retain(|conn| {
            let lossy = conn.lossy.load(Ordering::Relaxed);
            if lossy {
                conn.close();
            }
            !lossy
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for conn in self.shared.lock().conns.drain(..) {
            conn.close();
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match listener.accept() {
            Ok((client, _)) => {
                workers.retain(|w| !w.is_finished());
                if shared.mode() == Mode::Cut || client.set_nonblocking(false).is_err() {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let shared = Arc::clone(&shared);
                match thread::Builder::new()
                    .name("proxy-conn".into())
                    .spawn(move || connection(client, shared))
                {
                    Ok(w) => workers.push(w),
                    Err(_) => thread::sleep(TICK),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of descriptors and the like: wait, then try again.
            Err(_) => thread::sleep(TICK),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

fn connection(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let clones = (|| {
        Some((
            client.try_clone().ok()?,
            upstream.try_clone().ok()?,
            client.try_clone().ok()?,
            upstream.try_clone().ok()?,
        ))
    })();
    let Some((client_ctl, upstream_ctl, client_back, upstream_back)) = clones else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    };
    let lossy = Arc::new(AtomicBool::new(false));
    let id = {
        let mut st = shared.lock();
        // Checked under the lock that `cut` and `drop` take, so a
        // connection cannot slip past either.
        if shared.stopping() || st.mode == Mode::Cut {
            drop(st);
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        }
        let id = st.next_id;
        st.next_id += 1;
        st.conns.push(Conn {
            id,
            client: client_ctl,
            upstream: upstream_ctl,
            lossy: Arc::clone(&lossy),
        });
        id
    };
    let back = {
        let shared = Arc::clone(&shared);
        let lossy = Arc::clone(&lossy);
        thread::Builder::new()
            .name("proxy-back".into())
            .spawn(move || pump(upstream_back, client_back, &shared, &lossy))
    };
    pump(client, upstream, &shared, &lossy);
    if let Ok(back) = back {
        let _ = back.join();
    }
    shared.lock().conns.retain(|c| c.id != id);
}

enum End {
    /// The source closed its side: pass the FIN on.
    HalfClose,
    /// Error, cut or stop: close both sockets.
    Abort,
}

/// Copies `src` to `dst` under the current mode until one side closes.
fn pump(mut src: TcpStream, mut dst: TcpStream, shared: &Shared, lossy: &AtomicBool) {
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut queued = 0usize;
    let mut src_open = true;
    let mut buf = vec![0u8; CHUNK];
    let mut read_timeout = None;
    let _ = dst.set_write_timeout(Some(TICK));
    let end = 'pump: loop {
        if shared.stopping() {
            break End::Abort;
        }
        let mode = shared.mode();
        let delay = match mode {
            Mode::Cut => break End::Abort,
            Mode::Drop => {
                if !queue.is_empty() {
                    shared.discard(lossy, queued);
                    queue.clear();
                    queued = 0;
                }
                None
            }
            Mode::Pass => Some(Duration::ZERO),
            Mode::Delay(d) => Some(d),
        };
        // Deliver what is due, in order.
        let mut wait = TICK;
        if let Some(delay) = delay {
            while let Some((arrived, _)) = queue.front() {
                let due = *arrived + delay;
                let now = Instant::now();
                if due > now {
                    wait = wait.min(due - now);
                    break;
                }
                let (_, chunk) = queue.pop_front().expect("front exists");
                queued -= chunk.len();
                if send(&mut dst, &chunk, shared, lossy).is_err() {
                    break 'pump End::Abort;
                }
            }
        }
        if !src_open {
            // A FIN is traffic too: a drop holds it back.
            if queue.is_empty() && mode != Mode::Drop {
                break End::HalfClose;
            }
            thread::sleep(wait);
            continue;
        }
        if queued >= QUEUE_CAP {
            thread::sleep(wait);
            continue;
        }
        let wait = if queue.is_empty() {
            IDLE
        } else {
            wait.max(Duration::from_millis(1))
        };
        if read_timeout != Some(wait) {
            if src.set_read_timeout(Some(wait)).is_err() {
                break End::Abort;
            }
            read_timeout = Some(wait);
        }
        match src.read(&mut buf) {
            Ok(0) => src_open = false,
            Ok(n) => match shared.mode() {
                Mode::Cut => break End::Abort,
                Mode::Drop => shared.discard(lossy, n),
                Mode::Pass | Mode::Delay(_) => {
                    queue.push_back((Instant::now(), buf[..n].to_vec()));
                    queued += n;
                }
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break End::Abort,
        }
    };
    match end {
        End::HalfClose => {
            let _ = dst.shutdown(Shutdown::Write);
        }
        End::Abort => {
            let _ = src.shutdown(Shutdown::Both);
            let _ = dst.shutdown(Shutdown::Both);
        }
    }
}

/// Writes all of `chunk`, looking at the mode whenever `dst` is full.
fn send(dst: &mut TcpStream, chunk: &[u8], shared: &Shared, lossy: &AtomicBool) -> io::Result<()> {
    let mut off = 0;
    while off < chunk.len() {
        match dst.write(&chunk[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if shared.stopping() {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                match shared.mode() {
                    Mode::Cut => return Err(io::ErrorKind::ConnectionAborted.into()),
                    Mode::Drop => {
                        shared.discard(lossy, chunk.len() - off);
                        return Ok(());
                    }
                    Mode::Pass | Mode::Delay(_) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
