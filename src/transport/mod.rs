//! Peer links: how raft messages and relayed client requests travel between
//! nodes.
//!
//! The driver hands outgoing messages to a [`Transport`] and never waits on
//! it: a transport queues (bounded), batches and reconnects on its own, and
//! reports what it could not deliver through [`Inbound`]. Incoming traffic
//! reaches the node through the same [`Inbound`] trait, which the raft layer
//! implements; this module never names the raft driver.

pub mod tcp;
pub mod wire;

use std::path::PathBuf;

use bytes::Bytes;
use raft::eraftpb::Message;

pub use tcp::{PeerStats, TcpTransport};

/// Outgoing traffic, called from the driver thread. Nothing here may block
/// on the network.
pub trait Transport: Send + 'static {
    /// Queues raft messages for their peers.
    fn send(&mut self, messages: Vec<Message>);
    /// Queues a relayed client request for `to` (the leader); false when
    /// it could not be queued (no link, or its queue is full), so that the
    /// caller keeps the request instead of waiting for an answer that
    /// cannot come.
    fn forward(&mut self, to: u64, id: u64, body: Vec<u8>) -> bool;
    /// Queues the answer to a relayed request for `to` (the follower).
    fn forward_reply(&mut self, to: u64, id: u64, body: Vec<u8>);
    /// Learns, changes or forgets the address of a peer.
    fn set_peer(&mut self, id: u64, addr: Option<String>);
}

/// Incoming traffic and delivery reports, implemented by the node.
pub trait Inbound: Send + Sync + 'static {
    fn raft(&self, message: Message);
    fn forward(&self, from: u64, id: u64, body: Bytes);
    fn forward_reply(&self, from: u64, id: u64, body: Bytes);
    fn unreachable(&self, peer: u64);
    fn snapshot_sent(&self, peer: u64, delivered: bool);
    /// The file of this node's snapshot at `index`, to send.
    fn snapshot_file(&self, index: u64) -> PathBuf;
    /// Where to write a snapshot file arriving from `from` (transfer
    /// numbers are unique on this node).
    fn incoming_snapshot_path(&self, index: u64, from: u64, transfer: u64) -> PathBuf;
    /// A `MsgSnapshot` whose file arrived whole (and fsynced) at `file`.
    /// `taken` is called once the node has it in hand (true) or found it
    /// unusable (false); the sender learns which, and only then tells its
    /// raft the snapshot was delivered, so raft sends no second copy while
    /// the first is being decoded.
    fn snapshot(&self, message: Message, file: PathBuf, taken: Box<dyn FnOnce(bool) + Send>);
}
