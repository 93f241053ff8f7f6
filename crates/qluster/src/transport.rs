//! Node-to-node Raft messages over HTTP on the API port: `POST /raft` with a body of
//! frames `[len u32 LE][protobuf Message]`.
//!
//! One sender task per peer keeps messages to that peer in order and batches what queued
//! up while the previous request was in flight. Delivery is best effort: a failed or slow
//! request is dropped and Raft's own retries (heartbeats, probes) recover.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use qluster_core::{ClusterState, NodeId};
use raft::prelude::Message;
use tokio::sync::mpsc;

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Messages sent in one request at most.
const BATCH: usize = 512;

/// Why a request body is not a valid batch.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated frame at byte {0}")]
    Truncated(usize),
    #[error("bad raft message: {0}")]
    Protobuf(#[from] protobuf::ProtobufError),
}

/// Encodes messages as length-prefixed frames.
pub fn encode_batch(msgs: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        // A message that fails to encode is dropped like a lost packet.
        if let Ok(bytes) = m.write_to_bytes() {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
    }
    out
}

/// Decodes a batch; never panics on bad input.
pub fn decode_batch(mut buf: &[u8]) -> Result<Vec<Message>, DecodeError> {
    let total = buf.len();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let pos = total - buf.len();
        let Some((len, rest)) = buf.split_first_chunk::<4>() else {
            return Err(DecodeError::Truncated(pos));
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some(body) = rest.get(..len) else {
            return Err(DecodeError::Truncated(pos));
        };
        out.push(Message::parse_from_bytes(body)?);
        buf = &rest[len..];
    }
    Ok(out)
}

/// Outgoing side of the transport.
/// Header naming the sender of a batch (`"<id> <host:port>"`), so a node that has no map
/// yet (a joining listener) can answer the leader.
pub const FROM_HEADER: &str = "x-qluster-from";

/// Peer API addresses, shared by the sender tasks and the `/raft` handler.
pub type PeerAddrs = Arc<RwLock<HashMap<NodeId, String>>>;

/// Records a sender's address if the map does not know it.
pub fn learn_addr(addrs: &PeerAddrs, header: &str) {
    let Some((id, addr)) = header.split_once(' ') else {
        return;
    };
    let Ok(id) = id.parse::<NodeId>() else { return };
    if let Ok(mut map) = addrs.write() {
        map.entry(id).or_insert_with(|| addr.to_string());
    }
}

pub struct Transport {
    self_id: NodeId,
    self_addr: String,
    addrs: PeerAddrs,
    queues: HashMap<NodeId, mpsc::Sender<Message>>,
    client: reqwest::Client,
}

impl Transport {
    pub fn new(self_id: NodeId, self_addr: String, client: reqwest::Client) -> Transport {
        Transport {
            self_id,
            self_addr,
            addrs: Arc::new(RwLock::new(HashMap::new())),
            queues: HashMap::new(),
            client,
        }
    }

    /// The shared address map (for the `/raft` handler).
    pub fn addrs(&self) -> PeerAddrs {
        self.addrs.clone()
    }

    /// Updates peer addresses from the cluster map.
    pub fn refresh(&self, state: Option<&ClusterState>) {
        let Some(state) = state else { return };
        let Ok(mut addrs) = self.addrs.write() else {
            return;
        };
        for node in state.nodes.values() {
            if let Some(a) = node.api_addr() {
                addrs.insert(node.id, a);
            }
        }
    }

    /// Queues messages for their peers.
    pub fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if m.to == self.self_id {
                continue;
            }
            let to = m.to;
            let queue = self.queues.entry(to).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(PEER_QUEUE);
                let worker = PeerSender {
                    peer: to,
                    from: format!("{} {}", self.self_id, self.self_addr),
                    addrs: self.addrs.clone(),
                    client: self.client.clone(),
                };
                tokio::spawn(worker.run(rx));
                tx
            });
            // Full queue: drop, Raft will resend.
            let _ = queue.try_send(m);
        }
    }
}

struct PeerSender {
    peer: NodeId,
    from: String,
    addrs: Arc<RwLock<HashMap<NodeId, String>>>,
    client: reqwest::Client,
}

impl PeerSender {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let addr = self
                .addrs
                .read()
                .ok()
                .and_then(|a| a.get(&self.peer).cloned());
            let Some(addr) = addr else { continue };
            let body = encode_batch(&batch);
            let result = self
                .client
                .post(format!("http://{addr}/raft"))
                .timeout(Duration::from_millis(1000))
                .header(FROM_HEADER, &self.from)
                .body(body)
                .send()
                .await;
            if let Err(e) = result {
                tracing::debug!(peer = self.peer, "raft send failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let msgs: Vec<Message> = (1..4)
            .map(|i| Message {
                to: i,
                from: 9,
                term: 7,
                ..Default::default()
            })
            .collect();
        let back = decode_batch(&encode_batch(&msgs)).unwrap();
        assert_eq!(back, msgs);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_batch(&[1, 2]).is_err());
        assert!(decode_batch(&[200, 0, 0, 0, 1]).is_err());
        assert!(decode_batch(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).is_err());
    }
}
