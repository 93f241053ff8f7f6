//! In-test TCP proxies for network partitions.
//!
//! Every node's API/Raft port and Postgres port is advertised to its peers through a
//! proxy. Each node has its own loopback address (`127.0.0.11`, `.12`, ...) and its
//! daemon sends from it (`bind-source-address`), so a proxy knows which node a
//! connection comes from. Cutting node `i` then blackholes every link to or from it:
//! new connections are accepted but never forwarded, open ones stop moving bytes —
//! the way a real partition looks to TCP (timeouts, not resets). Healing closes the
//! frozen connections, as TCP would after retransmissions give up.
//!
//! Postgres connections carry no node identity (libpq cannot choose a source address),
//! so they are cut at the receiving node's proxy: the connections a cut node's primary
//! serves are all inbound to it, which is what matters for a partitioned leader.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The set of nodes (indices) currently cut off from everyone else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rules {
    cut: BTreeSet<usize>,
}

impl Rules {
    /// Whether traffic from `src` (a node index, or `None` for anyone else) to the
    /// proxy of node `owner` is dropped.
    fn blocks(&self, src: Option<usize>, owner: usize) -> bool {
        self.cut.contains(&owner) || src.is_some_and(|s| s != owner && self.cut.contains(&s))
    }
}

/// Loopback address of node `i` in a proxied cluster.
pub fn node_ip(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 11 + i as u8])
}

/// The proxies of a cluster and the switch that partitions it.
pub struct Proxies {
    runtime: tokio::runtime::Runtime,
    rules: watch::Sender<Rules>,
    /// Nodes that connections were seen from (by source address).
    seen: Arc<Mutex<BTreeSet<usize>>>,
}

impl Proxies {
    pub fn new() -> Proxies {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (rules, _) = watch::channel(Rules::default());
        Proxies {
            runtime,
            rules,
            seen: Arc::default(),
        }
    }

    /// The runtime the proxies run on (tests may run their own probes there).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Starts a proxy for node `owner` listening on `listen` and forwarding to
    /// `upstream`. `sources` maps node addresses to node indices.
    pub fn add(
        &self,
        owner: usize,
        listen: SocketAddr,
        upstream: SocketAddr,
        sources: Arc<HashMap<IpAddr, usize>>,
    ) {
        let listener = self
            .runtime
            .block_on(TcpListener::bind(listen))
            .unwrap_or_else(|e| panic!("proxy bind {listen}: {e}"));
        let rules = self.rules.subscribe();
        let seen = self.seen.clone();
        self.runtime.spawn(async move {
            while let Ok((client, peer)) = listener.accept().await {
                let src = sources.get(&peer.ip()).copied();
                if let Some(s) = src {
                    seen.lock().unwrap().insert(s);
                }
                let link = Link {
                    src,
                    owner,
                    rules: rules.clone(),
                };
                tokio::spawn(link.serve(client, upstream));
            }
        });
    }

    /// The nodes whose connections the proxies could attribute by source address.
    pub fn seen_sources(&self) -> BTreeSet<usize> {
        self.seen.lock().unwrap().clone()
    }

    /// Cuts node `i` off from every other node.
    pub fn cut(&self, i: usize) {
        self.rules.send_modify(|r| {
            r.cut.insert(i);
        });
    }

    /// Heals every cut.
    pub fn heal(&self) {
        self.rules.send_modify(|r| r.cut.clear());
    }
}

/// One proxied connection.
struct Link {
    src: Option<usize>,
    owner: usize,
    rules: watch::Receiver<Rules>,
}

impl Link {
    fn blocked(&mut self) -> bool {
        self.rules.borrow_and_update().blocks(self.src, self.owner)
    }

    /// Resolves once the link is cut (never, if the proxies are gone).
    async fn until_cut(&mut self) {
        while !self.blocked() {
            if self.rules.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves once the link is healed (or the proxies are gone).
    async fn until_healed(&mut self) {
        while self.blocked() {
            if self.rules.changed().await.is_err() {
                return;
            }
        }
    }

    async fn serve(mut self, mut client: TcpStream, upstream: SocketAddr) {
        if self.blocked() {
            // Blackhole: the peer sees an accepted connection that never answers.
            self.until_healed().await;
            return;
        }
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            _ = self.until_cut() => self.until_healed().await,
        }
        // Dropping both sockets closes the connection on both sides.
    }
}
