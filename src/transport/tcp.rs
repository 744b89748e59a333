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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::wire::{message_frames, Frame, Reassembly, WireError, CHUNK, NONCE, PROOF};
use super::{Inbound, Transport};

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;

/// An incoming snapshot file is synced every this many bytes as it
/// arrives, so that its writeback never queues a gigabyte in front of the
/// WAL's fsyncs on the same disk (the snapshot store writes its own files
/// the same way).
const SYNC_EVERY: u64 = 16 << 20;
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
    /// Bytes written to the link (`/metrics`).
    pub sent_bytes: prometheus_client::metrics::counter::Counter,
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
    auth: PeerAuth,
    runtime: Handle,
    inbound: OnceLock<Arc<dyn Inbound>>,
    rejected: AtomicU64,
    metrics: Arc<crate::metrics::Metrics>,
    /// Numbers incoming snapshot files.
    transfers: AtomicU64,
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
    pub fn new(
        id: u64,
        cluster: u64,
        auth: PeerAuth,
        runtime: Handle,
        peers: &[(u64, String)],
        metrics: Arc<crate::metrics::Metrics>,
    ) -> TcpTransport {
        let mut transport = TcpTransport {
            shared: Arc::new(Shared {
                id,
                cluster,
                auth,
                runtime,
                inbound: OnceLock::new(),
                rejected: AtomicU64::new(0),
                metrics,
                transfers: AtomicU64::new(0),
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

    /// Queues `item` for `peer`; false when it was dropped.
    fn enqueue(&mut self, peer: u64, item: Outgoing) -> bool {
        let Some(link) = self.link(peer) else {
            tracing::debug!(peer, "no address for peer; message dropped");
            return false;
        };
        if link.queue.try_send(item).is_err() {
            link.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
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
                // Raft sends again what is lost.
                let _ = self.enqueue(to, Outgoing::Raft(m));
            }
        }
    }

    fn forward(&mut self, to: u64, id: u64, body: Vec<u8>) -> bool {
        self.enqueue(
            to,
            Outgoing::Frame(Frame::Forward {
                id,
                body: body.into(),
            }),
        )
    }

    fn forward_reply(&mut self, to: u64, id: u64, body: Vec<u8>) {
        // A lost answer leaves the follower's request to its deadline, and
        // its outcome unknown, as a lost link would.
        let _ = self.enqueue(
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
                let stats = Arc::new(PeerStats {
                    sent_bytes: self
                        .shared
                        .metrics
                        .peer_sent_bytes
                        .get_or_create_owned(&[("peer", id)]),
                    ..PeerStats::default()
                });
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
    #[error("the handshake did not follow the protocol (expected {0})")]
    NoHello(&'static str),
    #[error("peer belongs to cluster {0:#x}")]
    WrongCluster(u64),
    #[error("peer addressed node {0}, this is node {1}")]
    WrongNode(u64, u64),
    #[error(
        "the proof of the cluster key does not verify (wrong --peer-secret-file, or not a member)"
    )]
    BadProof,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("link authenticated as node {link} carried a message from node {claimed}")]
    ForgedSender { link: u64, claimed: u64 },
    #[error("the snapshot was not taken (unusable on arrival, or no node here)")]
    SnapshotRefused,
    #[error("undecodable raft message: {0}")]
    Decode(#[from] protobuf::ProtobufError),
}

impl LinkError {
    /// The other side is not who it should be (as opposed to unreachable).
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            LinkError::BadProof
                | LinkError::Tls(_)
                | LinkError::WrongCluster(_)
                | LinkError::NoHello(_)
        )
    }
}

/// Anything a peer link runs over: a TCP stream, or TLS on one.
trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}
type PeerStream = Box<dyn PeerIo>;

/// How the nodes of a cluster prove themselves to each other.
#[derive(Clone, Default)]
pub struct PeerAuth {
    /// The HMAC key of the handshake: the shared secret of
    /// `--peer-secret-file`; without one, the cluster id (which proves
    /// nothing to someone who knows it: then TLS, or a network nobody
    /// else reaches, is what keeps strangers out).
    pub key: Vec<u8>,
    /// Mutual TLS on every link, with the cluster CA.
    pub tls: Option<Arc<crate::tls::TlsFiles>>,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The handshake's proof: an HMAC of everything both sides said, under the
/// cluster key, labelled by the side that makes it so that neither side's
/// proof can be replayed as the other's.
fn proof(key: &[u8], label: &[u8], hello: &Frame, acceptor_nonce: &[u8; NONCE]) -> [u8; PROOF] {
    use hmac::Mac;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(label);
    let mut transcript = BytesMut::new();
    hello.encode(&mut transcript);
    mac.update(&transcript);
    mac.update(acceptor_nonce);
    mac.finalize().into_bytes().into()
}

fn verify(
    key: &[u8],
    label: &[u8],
    hello: &Frame,
    acceptor_nonce: &[u8; NONCE],
    got: &[u8; PROOF],
) -> bool {
    use hmac::Mac;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(label);
    let mut transcript = BytesMut::new();
    hello.encode(&mut transcript);
    mac.update(&transcript);
    mac.update(acceptor_nonce);
    mac.verify_slice(got).is_ok()
}

const ACCEPTOR: &[u8] = b"concord peer acceptor";
const CONNECTOR: &[u8] = b"concord peer connector";

/// Reads one frame during the handshake.
async fn read_frame(stream: &mut PeerStream, buf: &mut BytesMut) -> Result<Frame, LinkError> {
    loop {
        if let Some(frame) = Frame::decode(buf)? {
            return Ok(frame);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(LinkError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

/// Connects to `peer`, with TLS if the cluster uses it, and proves this
/// node's identity (and checks the peer's) before anything else is sent.
async fn connect(shared: &Shared, peer: u64, addr: &str) -> Result<PeerStream, LinkError> {
    tokio::time::timeout(HELLO_TIMEOUT, async {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| LinkError::Timeout)??;
        tcp.set_nodelay(true)?;
        let mut stream: PeerStream = match shared.auth.tls.as_ref().and_then(|t| t.peer_connector())
        {
            Some(connector) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_matches(['[', ']']);
                let name =
                    rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap_or_else(|_| {
                        rustls::pki_types::ServerName::try_from("concord.invalid")
                            .expect("a valid name")
                    });
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| LinkError::Tls(e.to_string()))?;
                crate::tls::may_be_node(tls.get_ref().1.peer_certificates(), peer)
                    .map_err(LinkError::Tls)?;
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        let hello = Frame::Hello {
            cluster: shared.cluster,
            from: shared.id,
            to: peer,
            nonce: rand::random(),
        };
        let mut buf = BytesMut::new();
        hello.encode(&mut buf);
        stream.write_all(&buf).await?;
        buf.clear();
        let Frame::Challenge {
            nonce,
            proof: theirs,
        } = read_frame(&mut stream, &mut buf).await?
        else {
            return Err(LinkError::NoHello("a challenge"));
        };
        if !verify(&shared.auth.key, ACCEPTOR, &hello, &nonce, &theirs) {
            return Err(LinkError::BadProof);
        }
        buf.clear();
        Frame::Proof(proof(&shared.auth.key, CONNECTOR, &hello, &nonce)).encode(&mut buf);
        stream.write_all(&buf).await?;
        Ok(stream)
    })
    .await
    .map_err(|_| LinkError::Timeout)?
}

/// The accepting side of the handshake: who the peer is, proven; the
/// link is bound to that id from here on.
async fn accept(
    shared: &Shared,
    socket: TcpStream,
    buf: &mut BytesMut,
) -> Result<(PeerStream, u64), LinkError> {
    let _ = socket.set_nodelay(true);
    let (mut stream, certs): (PeerStream, _) = match shared.auth.tls.as_ref() {
        Some(files) => {
            let acceptor = files
                .peer_acceptor()
                .ok_or_else(|| LinkError::Tls("peer TLS needs --tls-ca-cert-file".into()))?;
            let tls = acceptor
                .accept(socket)
                .await
                .map_err(|e| LinkError::Tls(e.to_string()))?;
            let certs = tls.get_ref().1.peer_certificates().map(|c| c.to_vec());
            (Box::new(tls), Some(certs))
        }
        None => (Box::new(socket), None),
    };
    let hello = read_frame(&mut stream, buf).await?;
    let Frame::Hello {
        cluster, from, to, ..
    } = hello
    else {
        return Err(LinkError::NoHello("a hello"));
    };
    if cluster != shared.cluster {
        return Err(LinkError::WrongCluster(cluster));
    }
    if to != shared.id {
        return Err(LinkError::WrongNode(to, shared.id));
    }
    if let Some(certs) = certs {
        crate::tls::may_be_node(certs.as_deref(), from).map_err(LinkError::Tls)?;
    }
    let nonce: [u8; NONCE] = rand::random();
    let mut out = BytesMut::new();
    Frame::Challenge {
        nonce,
        proof: proof(&shared.auth.key, ACCEPTOR, &hello, &nonce),
    }
    .encode(&mut out);
    stream.write_all(&out).await?;
    let Frame::Proof(theirs) = read_frame(&mut stream, buf).await? else {
        return Err(LinkError::NoHello("a proof"));
    };
    if !verify(&shared.auth.key, CONNECTOR, &hello, &nonce, &theirs) {
        return Err(LinkError::BadProof);
    }
    Ok((stream, from))
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
                if e.is_refusal() && !reported {
                    tracing::warn!(peer, %target, error = %e, "peer link refused");
                } else {
                    tracing::debug!(peer, %target, error = %e, "cannot reach peer");
                }
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
    stream: &mut PeerStream,
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
        stats.sent_bytes.inc_by(buf.len() as u64);
        buf.clear();
    }
}

/// Largest snapshot file a peer may announce.
const MAX_SNAPSHOT_FILE: u64 = 1 << 40;

/// Sends a `MsgSnapshot` and then its file from disk, a chunk at a time.
async fn send_snapshot(
    shared: &Shared,
    peer: u64,
    addr: &str,
    mut message: Message,
) -> Result<(), LinkError> {
    let inbound = shared.inbound().ok_or(LinkError::SnapshotRefused)?;
    let index = message.get_snapshot().get_metadata().index;
    let path = inbound.snapshot_file(index);
    let mut file = tokio::fs::File::open(&path).await?;
    let file_len = file.metadata().await?.len();
    let mut stream = connect(shared, peer, addr).await?;
    // The data is the file; what raft's log store holds is the metadata.
    message.mut_snapshot().data = Bytes::new();
    let sent = shared
        .metrics
        .peer_sent_bytes
        .get_or_create_owned(&[("peer", peer)]);
    let mut buf = BytesMut::new();
    Frame::SnapshotHead {
        file_len,
        message: Bytes::from(message.write_to_bytes()?),
    }
    .encode(&mut buf);
    let mut chunk = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < file_len {
        let n = (file_len - offset).min(CHUNK as u64) as usize;
        file.read_exact(&mut chunk[..n]).await?;
        Frame::Chunk {
            total: file_len,
            offset,
            data: Bytes::copy_from_slice(&chunk[..n]),
        }
        .encode(&mut buf);
        stream.write_all(&buf).await?;
        sent.inc_by(buf.len() as u64);
        buf.clear();
        offset += n as u64;
    }
    stream.flush().await?;
    tracing::info!(peer, index, bytes = file_len, "snapshot sent");
    // One byte back once the peer decoded it (1) or refused it (0); a
    // link that closes first delivered nothing.
    let mut taken = [0u8; 1];
    stream.read_exact(&mut taken).await?;
    let _ = stream.shutdown().await;
    if taken[0] != 1 {
        return Err(LinkError::SnapshotRefused);
    }
    Ok(())
}

/// A snapshot file being received. Dropped unfinished (the link broke, a
/// frame was wrong), it removes the partial file.
struct Incoming {
    message: Message,
    path: std::path::PathBuf,
    file: Option<tokio::fs::File>,
    total: u64,
    written: u64,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Incoming {
    async fn start(
        shared: &Shared,
        inbound: &Arc<dyn Inbound>,
        from: u64,
        file_len: u64,
        body: &[u8],
    ) -> Result<Incoming, LinkError> {
        let message = checked_message(shared, from, body)?;
        if message.get_msg_type() != MessageType::MsgSnapshot || file_len > MAX_SNAPSHOT_FILE {
            return Err(WireError::Malformed("snapshot head").into());
        }
        let index = message.get_snapshot().get_metadata().index;
        let transfer = shared.transfers.fetch_add(1, Ordering::Relaxed);
        let path = inbound.incoming_snapshot_path(index, from, transfer);
        let file = tokio::fs::File::create(&path).await?;
        Ok(Incoming {
            message,
            path,
            file: Some(file),
            total: file_len,
            written: 0,
        })
    }

    /// Writes a chunk; true once the whole file is written and fsynced.
    async fn add(&mut self, total: u64, offset: u64, data: &[u8]) -> Result<bool, LinkError> {
        if total != self.total
            || offset != self.written
            || offset + data.len() as u64 > total
            || data.is_empty()
        {
            return Err(WireError::BadChunk { total, offset }.into());
        }
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(data).await?;
        let before = self.written;
        self.written += data.len() as u64;
        if self.written < self.total {
            // Synced as it arrives, for the WAL's fsyncs' sake.
            if before / SYNC_EVERY != self.written / SYNC_EVERY {
                file.sync_data().await?;
            }
            return Ok(false);
        }
        file.sync_all().await?;
        Ok(true)
    }

    /// The message and the complete file, which is no longer removed.
    fn finish(mut self) -> (Message, std::path::PathBuf) {
        self.file = None;
        (
            std::mem::take(&mut self.message),
            std::mem::take(&mut self.path),
        )
    }
}

/// The receiving side of one incoming connection.
async fn receive(shared: &Shared, socket: TcpStream) -> Result<(), LinkError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let (mut stream, from) = tokio::time::timeout(HELLO_TIMEOUT, accept(shared, socket, &mut buf))
        .await
        .map_err(|_| LinkError::Timeout)??;
    let mut chunks = Reassembly::default();
    let mut incoming: Option<Incoming> = None;
    let received = shared
        .metrics
        .peer_received_bytes
        .get_or_create_owned(&[("peer", from)]);
    loop {
        while let Some(frame) = Frame::decode(&mut buf)? {
            let Some(inbound) = shared.inbound() else {
                continue;
            };
            match frame {
                Frame::Raft(body) => deliver(shared, inbound, from, &body)?,
                Frame::SnapshotHead { file_len, message } => {
                    incoming =
                        Some(Incoming::start(shared, inbound, from, file_len, &message).await?);
                }
                Frame::Chunk {
                    total,
                    offset,
                    data,
                } => match incoming.as_mut() {
                    Some(file) => {
                        if file.add(total, offset, &data).await? {
                            let (message, path) = incoming.take().expect("checked above").finish();
                            let (tx, rx) = tokio::sync::oneshot::channel();
                            inbound.snapshot(
                                message,
                                path,
                                Box::new(move |ok| {
                                    let _ = tx.send(ok);
                                }),
                            );
                            let taken = rx.await.unwrap_or(false);
                            stream.write_all(&[u8::from(taken)]).await?;
                            stream.flush().await?;
                        }
                    }
                    None => {
                        if let Some(body) = chunks.add(total, offset, data)? {
                            deliver(shared, inbound, from, &body)?;
                        }
                    }
                },
                Frame::Forward { id, body } => inbound.forward(from, id, body),
                Frame::ForwardReply { id, body } => inbound.forward_reply(from, id, body),
                Frame::Hello { .. } | Frame::Challenge { .. } | Frame::Proof(_) => {
                    return Err(LinkError::NoHello("no more handshake"))
                }
            }
        }
        match stream.read_buf(&mut buf).await? {
            0 => return Ok(()),
            n => {
                received.inc_by(n as u64);
            }
        }
    }
}

fn deliver(
    shared: &Shared,
    inbound: &Arc<dyn Inbound>,
    from: u64,
    body: &[u8],
) -> Result<(), LinkError> {
    inbound.raft(checked_message(shared, from, body)?);
    Ok(())
}

/// A raft message from the peer this link authenticated, addressed here.
fn checked_message(shared: &Shared, from: u64, body: &[u8]) -> Result<Message, LinkError> {
    let message = Message::parse_from_bytes(body)?;
    if message.from != from {
        return Err(LinkError::ForgedSender {
            link: from,
            claimed: message.from,
        });
    }
    if message.to != shared.id {
        return Err(LinkError::WrongNode(message.to, shared.id));
    }
    Ok(message)
}
