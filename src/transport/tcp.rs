//! Raft traffic over TCP: one outgoing connection per peer, reconnecting
//! with backoff; incoming connections only receive.
//!
//! Each peer has a bounded queue. When it is full (the peer is slow or gone)
//! messages are dropped and counted: raft retransmits what matters, and a
//! slow peer must never block the driver or grow memory without bound. While
//! a peer cannot be reached, its queue is discarded on every failed attempt
//! and the node is told, so raft stops pipelining to it. Snapshots travel on
//! a connection of their own, so a large one never delays heartbeats.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::wire::{message_frames, Frame, Reassembly, WireError};
use super::{Inbound, Transport};

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Bytes gathered into one write.
const BATCH_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Delivery counters of one peer link.
#[derive(Default)]
pub struct PeerStats {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub connects: AtomicU64,
}

enum Outgoing {
    Raft(Message),
    Frame(Frame),
}

struct Link {
    queue: mpsc::Sender<Outgoing>,
    addr: Arc<Mutex<String>>,
    stats: Arc<PeerStats>,
}

struct Shared {
    id: u64,
    cluster: u64,
    runtime: Handle,
    inbound: OnceLock<Arc<dyn Inbound>>,
    rejected: AtomicU64,
}

impl Shared {
    fn inbound(&self) -> Option<&Arc<dyn Inbound>> {
        self.inbound.get()
    }
}

/// The TCP transport. Create it, start the node with it, then
/// [`TcpTransport::bind`] the node and [`serve`] the peer listener.
pub struct TcpTransport {
    shared: Arc<Shared>,
    links: HashMap<u64, Link>,
    stats: Arc<Mutex<HashMap<u64, Arc<PeerStats>>>>,
}

impl TcpTransport {
    /// `peers` are the other members and their peer addresses.
    pub fn new(id: u64, cluster: u64, runtime: Handle, peers: &[(u64, String)]) -> TcpTransport {
        let mut transport = TcpTransport {
            shared: Arc::new(Shared {
                id,
                cluster,
                runtime,
                inbound: OnceLock::new(),
                rejected: AtomicU64::new(0),
            }),
            links: HashMap::new(),
            stats: Arc::new(Mutex::new(HashMap::new())),
        };
        for (peer, addr) in peers {
            if *peer != id {
                transport.set_peer(*peer, Some(addr.clone()));
            }
        }
        transport
    }

    /// A handle for binding the node and serving the listener, usable after
    /// the transport itself moved into the driver.
    pub fn binder(&self) -> Binder {
        Binder {
            shared: self.shared.clone(),
            stats: self.stats.clone(),
        }
    }

    fn link(&mut self, peer: u64) -> Option<&Link> {
        self.links.get(&peer)
    }

    fn enqueue(&mut self, peer: u64, item: Outgoing) {
        let Some(link) = self.link(peer) else {
            tracing::debug!(peer, "no address for peer; message dropped");
            return;
        };
        if link.queue.try_send(item).is_err() {
            link.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send_snapshot(&self, message: Message) {
        let peer = message.to;
        let Some(link) = self.links.get(&peer) else {
            if let Some(inbound) = self.shared.inbound() {
                inbound.snapshot_sent(peer, false);
            }
            return;
        };
        let addr = link.addr.lock().expect("addr lock").clone();
        let shared = self.shared.clone();
        self.shared.runtime.spawn(async move {
            let delivered = match send_snapshot(&shared, peer, &addr, message).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(peer, error = %e, "snapshot transfer failed");
                    false
                }
            };
            if let Some(inbound) = shared.inbound() {
                inbound.snapshot_sent(peer, delivered);
            }
        });
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(m);
            } else {
                let to = m.to;
                self.enqueue(to, Outgoing::Raft(m));
            }
        }
    }

    fn forward(&mut self, to: u64, id: u64, body: Vec<u8>) {
        self.enqueue(
            to,
            Outgoing::Frame(Frame::Forward {
                id,
                body: body.into(),
            }),
        );
    }

    fn forward_reply(&mut self, to: u64, id: u64, body: Vec<u8>) {
        self.enqueue(
            to,
            Outgoing::Frame(Frame::ForwardReply {
                id,
                body: body.into(),
            }),
        );
    }

    fn set_peer(&mut self, id: u64, addr: Option<String>) {
        if id == self.shared.id {
            return;
        }
        match addr {
            None => {
                // Dropping the sender ends the link task.
                self.links.remove(&id);
                self.stats.lock().expect("stats lock").remove(&id);
            }
            Some(addr) => {
                if let Some(link) = self.links.get(&id) {
                    *link.addr.lock().expect("addr lock") = addr;
                    return;
                }
                let (tx, rx) = mpsc::channel(QUEUE);
                let addr = Arc::new(Mutex::new(addr));
                let stats = Arc::new(PeerStats::default());
                self.stats
                    .lock()
                    .expect("stats lock")
                    .insert(id, stats.clone());
                self.shared.runtime.spawn(run_link(
                    self.shared.clone(),
                    id,
                    addr.clone(),
                    stats.clone(),
                    rx,
                ));
                self.links.insert(
                    id,
                    Link {
                        queue: tx,
                        addr,
                        stats,
                    },
                );
            }
        }
    }
}

/// Binds the node to a transport and serves its listener.
#[derive(Clone)]
pub struct Binder {
    shared: Arc<Shared>,
    stats: Arc<Mutex<HashMap<u64, Arc<PeerStats>>>>,
}

impl Binder {
    /// Where incoming traffic goes. Set once, after the node started.
    pub fn bind(&self, inbound: Arc<dyn Inbound>) {
        let _ = self.shared.inbound.set(inbound);
    }

    /// Accepts peer connections until the listener fails or the task is
    /// dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((socket, addr)) => {
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = receive(&shared, socket).await {
                            shared.rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%addr, error = %e, "peer connection closed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(MIN_BACKOFF).await;
                }
            }
        }
    }

    /// Per-peer delivery counters.
    pub fn stats(&self) -> Vec<(u64, u64, u64, u64)> {
        let stats = self.stats.lock().expect("stats lock");
        let mut out: Vec<_> = stats
            .iter()
            .map(|(id, s)| {
                (
                    *id,
                    s.sent.load(Ordering::Relaxed),
                    s.dropped.load(Ordering::Relaxed),
                    s.connects.load(Ordering::Relaxed),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Peer connections refused or broken by bad input.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("timed out")]
    Timeout,
    #[error("first frame was not a hello")]
    NoHello,
    #[error("peer belongs to cluster {0:#x}")]
    WrongCluster(u64),
    #[error("peer addressed node {0}, this is node {1}")]
    WrongNode(u64, u64),
    #[error("undecodable raft message: {0}")]
    Decode(#[from] protobuf::ProtobufError),
}

async fn connect(shared: &Shared, peer: u64, addr: &str) -> Result<TcpStream, LinkError> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Timeout)??;
    stream.set_nodelay(true)?;
    let mut hello = BytesMut::new();
    Frame::Hello {
        cluster: shared.cluster,
        from: shared.id,
        to: peer,
    }
    .encode(&mut hello);
    stream.write_all(&hello).await?;
    Ok(stream)
}

fn encode_message(m: &Message, out: &mut BytesMut) {
    match m.write_to_bytes() {
        Ok(bytes) => {
            for frame in message_frames(Bytes::from(bytes)) {
                frame.encode(out);
            }
        }
        Err(e) => tracing::error!(error = %e, "raft message does not encode"),
    }
}

/// The outgoing side of one peer: connect, drain the queue in batches,
/// reconnect with backoff.
async fn run_link(
    shared: Arc<Shared>,
    peer: u64,
    addr: Arc<Mutex<String>>,
    stats: Arc<PeerStats>,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut reported = false;
    loop {
        let target = addr.lock().expect("addr lock").clone();
        match connect(&shared, peer, &target).await {
            Ok(mut stream) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                backoff = MIN_BACKOFF;
                reported = false;
                tracing::debug!(peer, %target, "peer link up");
                match pump(&mut stream, &mut queue, &stats).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(peer, error = %e, "peer link down"),
                }
            }
            Err(e) => {
                tracing::debug!(peer, %target, error = %e, "cannot reach peer");
                let mut discarded = 0u64;
                loop {
                    match queue.try_recv() {
                        Ok(_) => discarded += 1,
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                stats.dropped.fetch_add(discarded, Ordering::Relaxed);
                if !reported {
                    if let Some(inbound) = shared.inbound() {
                        inbound.unreachable(peer);
                    }
                    reported = true;
                }
                if queue.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Writes queued items in batches until the queue closes (Ok) or the
/// connection fails (Err).
async fn pump(
    stream: &mut TcpStream,
    queue: &mut mpsc::Receiver<Outgoing>,
    stats: &PeerStats,
) -> Result<(), LinkError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut probe = [0u8; 1];
    loop {
        let first = tokio::select! {
            item = queue.recv() => item,
            // The receiving side never writes: readable means closed.
            read = stream.read(&mut probe) => {
                return Err(match read {
                    Ok(_) => LinkError::Io(std::io::ErrorKind::ConnectionReset.into()),
                    Err(e) => LinkError::Io(e),
                });
            }
        };
        let Some(first) = first else {
            return Ok(());
        };
        let mut count = 0u64;
        let mut item = Some(first);
        while let Some(next) = item.take() {
            match next {
                Outgoing::Raft(m) => encode_message(&m, &mut buf),
                Outgoing::Frame(f) => f.encode(&mut buf),
            }
            count += 1;
            if buf.len() < BATCH_BYTES {
                item = queue.try_recv().ok();
            }
        }
        stream.write_all(&buf).await?;
        stats.sent.fetch_add(count, Ordering::Relaxed);
        buf.clear();
    }
}

async fn send_snapshot(
    shared: &Shared,
    peer: u64,
    addr: &str,
    message: Message,
) -> Result<(), LinkError> {
    let mut stream = connect(shared, peer, addr).await?;
    let bytes = message.write_to_bytes()?;
    let size = bytes.len();
    let mut buf = BytesMut::new();
    for frame in message_frames(Bytes::from(bytes)) {
        frame.encode(&mut buf);
        if buf.len() >= BATCH_BYTES {
            stream.write_all(&buf).await?;
            buf.clear();
        }
    }
    stream.write_all(&buf).await?;
    stream.shutdown().await?;
    tracing::info!(peer, bytes = size, "snapshot sent");
    Ok(())
}

/// The receiving side of one incoming connection.
async fn receive(shared: &Shared, mut socket: TcpStream) -> Result<(), LinkError> {
    let _ = socket.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let from = tokio::time::timeout(HELLO_TIMEOUT, async {
        loop {
            if let Some(frame) = Frame::decode(&mut buf)? {
                return match frame {
                    Frame::Hello { cluster, from, to } => {
                        if cluster != shared.cluster {
                            Err(LinkError::WrongCluster(cluster))
                        } else if to != shared.id {
                            Err(LinkError::WrongNode(to, shared.id))
                        } else {
                            Ok(from)
                        }
                    }
                    _ => Err(LinkError::NoHello),
                };
            }
            if socket.read_buf(&mut buf).await? == 0 {
                return Err(LinkError::NoHello);
            }
        }
    })
    .await
    .map_err(|_| LinkError::Timeout)??;
    let mut chunks = Reassembly::default();
    loop {
        while let Some(frame) = Frame::decode(&mut buf)? {
            let Some(inbound) = shared.inbound() else {
                continue;
            };
            match frame {
                Frame::Raft(body) => deliver(shared, inbound, from, &body)?,
                Frame::Chunk {
                    total,
                    offset,
                    data,
                } => {
                    if let Some(body) = chunks.add(total, offset, data)? {
                        deliver(shared, inbound, from, &body)?;
                    }
                }
                Frame::Forward { id, body } => inbound.forward(from, id, body),
                Frame::ForwardReply { id, body } => inbound.forward_reply(from, id, body),
                Frame::Hello { .. } => return Err(LinkError::NoHello),
            }
        }
        if socket.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

fn deliver(
    shared: &Shared,
    inbound: &Arc<dyn Inbound>,
    from: u64,
    body: &[u8],
) -> Result<(), LinkError> {
    let message = Message::parse_from_bytes(body)?;
    if message.to != shared.id || message.from != from {
        return Err(LinkError::WrongNode(message.to, shared.id));
    }
    inbound.raft(message);
    Ok(())
}
