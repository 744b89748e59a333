//! Starts real `concord` processes for integration tests.
//!
//! Every wait is a condition polled against a deadline: a test never sleeps
//! and hopes.

#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod linearizability;
pub mod proxy;
pub mod python;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `check` until it returns Some, or panics with `what` at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free a moment ago, for a node to listen on.
///
/// Taken below Linux's ephemeral range (32768 and up), from which every
/// outgoing connection draws its local port: a port picked there was
/// sometimes taken by a client socket of another test before the node
/// bound it ("Address already in use"). Tests of one binary share a
/// counter, and binaries start at different offsets by process id.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A one-node server in a fresh temporary data directory.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut server = Server {
            child: None,
            port: 0,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        server.boot();
        server
    }

    /// Starts (again) on the same data directory, on a new port.
    pub fn boot(&mut self) {
        assert!(self.child.is_none(), "already running");
        for _attempt in 0..5 {
            let port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .expect("log file");
            let child = Command::new(env!("CARGO_BIN_EXE_concord"))
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--peer-listen")
                .arg(format!("127.0.0.1:{}", free_port()))
                .arg("--data-dir")
                .arg(&self.dir)
                .args(&self.extra)
                .env("CONCORD_LOG", "info,slog=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn concord");
            self.child = Some(child);
            self.port = port;
            let up = wait_for("concord to answer PING or exit", START_TIMEOUT, || {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    return Some(Err(status));
                }
                ping(port).then_some(Ok(()))
            });
            match up {
                Ok(()) => return,
                Err(status) => {
                    self.child = None;
                    let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                    if !log.contains("cannot listen") {
                        panic!("concord exited with {status} during start:\n{log}");
                    }
                }
            }
        }
        panic!("could not find a free port for concord");
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.with_extension("log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("client");
        let con = client.get_connection().expect("connect");
        con.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        con
    }

    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        wait_for(
            "concord to exit after SIGTERM",
            Duration::from_secs(20),
            || child.try_wait().expect("wait"),
        )
    }

    /// Waits for the process to exit by itself (SHUTDOWN).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_for("concord to exit", Duration::from_secs(20), || {
            child.try_wait().expect("wait")
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True if a PING on a fresh connection gets PONG.
pub fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    // A node that asks for a password is up too.
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && (&buf == b"+PONG\r\n" || buf.starts_with(b"-NOAUTH"))
}

/// Sends raw bytes and reads until the server closes or `expect_len` bytes
/// have arrived.
pub fn exchange(stream: &mut TcpStream, request: &[u8], expect_len: usize) -> Vec<u8> {
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < expect_len {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read failed after {:?}: {e}", String::from_utf8_lossy(&out)),
        }
    }
    out
}

/// True once the server has closed `stream` (reads EOF).
pub fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0))
}
