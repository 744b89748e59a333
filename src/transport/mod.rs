//! Peer links: how raft messages leave this node.
//!
//! The driver hands every outgoing batch of messages to a [`Transport`] and
//! never waits on it; a transport queues, batches and reconnects on its own
//! and reports unreachable peers back through the node's inbox.

use raft::eraftpb::Message;

pub trait Transport: Send + 'static {
    /// Queues messages for their peers. Must not block on the network.
    fn send(&mut self, messages: Vec<Message>);
}

/// The transport of a one-node cluster: it has nobody to talk to, and raft
/// never addresses a message to a node outside its configuration.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            tracing::warn!(to = m.to, kind = ?m.get_msg_type(), "message for a peer in a one-node cluster dropped");
        }
    }
}
