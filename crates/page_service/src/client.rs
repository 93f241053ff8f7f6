//! An async client of `pagestream_v2` (see [`crate::pagestream`]).
//!
//! One TCP connection, shared by clones of [`PageClient`]: every call sends
//! its request at once and waits for its own answer, so concurrent callers
//! (or one caller with `join_all`) pipeline their requests. A writer task
//! numbers and sends requests, a reader task routes answers by id. If the
//! connection fails, every pending and later call fails with
//! [`ClientError::Closed`] or the server's error — a call never returns a
//! page it did not receive.
//!
//! [`Security`] adds what a secured pageserver asks for: TLS (an
//! `SSLRequest`, then a handshake verified against the work directory's CA)
//! and a JWT sent as the cleartext password (see [`crate::security`]).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use postgres_wal::Lsn;
use storage::{TenantId, TimelineId};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::rustls::pki_types::ServerName;

use crate::pagestream::{
    LazyBackup, RelSizeEntry, RelTag, Request, RequestKind, Response, ResponseKind,
};
use crate::proto::{self, ProtocolError};
use crate::security::BoxStream;

/// Largest answer the client accepts (a relation listing can be large).
const MAX_ANSWER_BYTES: u32 = 256 << 20;
/// Requests queued for the writer before callers wait.
const QUEUE: usize = 1024;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("page service connection: {0}")]
    Io(String),
    #[error("page service protocol: {0}")]
    Protocol(String),
    /// The server refused the request (SQLSTATE and message).
    #[error("page service error {sqlstate}: {message}")]
    Server { sqlstate: String, message: String },
    /// The connection is gone; the request may not have been answered.
    #[error("page service connection closed: {0}")]
    Closed(String),
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
    /// TLS could not be set up or the handshake failed.
    #[error("page service TLS: {0}")]
    Tls(String),
}

impl From<ProtocolError> for ClientError {
    fn from(e: ProtocolError) -> ClientError {
        match e {
            ProtocolError::Io(e) => ClientError::Io(e.to_string()),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

/// How to reach a secured page service; the default is plaintext and no
/// password.
#[derive(Clone, Default)]
pub struct Security {
    /// Speak TLS, verifying the server against these roots.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// The JWT sent when the server asks for a password.
    pub token: Option<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

impl Security {
    /// TLS trusting the CA certificates in `ca_file` (PEM), if given, and
    /// `token` as the password, if given.
    pub fn new(
        ca_file: Option<&std::path::Path>,
        token: Option<String>,
    ) -> Result<Security, ClientError> {
        let tls =
            match ca_file {
                Some(ca) => Some(auth::tls::client_config(ca).map_err(|e| {
                    ClientError::Tls(format!("CA certificate {}: {e}", ca.display()))
                })?),
                None => None,
            };
        Ok(Security { tls, token })
    }
}

type Reply = oneshot::Sender<Result<ResponseKind, ClientError>>;
type Pending = Arc<Mutex<PendingState>>;

#[derive(Default)]
struct PendingState {
    waiting: HashMap<u32, Reply>,
    /// Set once the connection failed: later calls fail at once.
    failed: Option<ClientError>,
}

impl PendingState {
    fn fail_all(&mut self, error: ClientError) {
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(error.clone()));
        }
        self.failed.get_or_insert(error);
    }
}

/// A handle on one `pagestream_v2` connection; clone it to share.
#[derive(Clone)]
pub struct PageClient {
    tx: mpsc::Sender<(Lsn, RequestKind, Reply)>,
    pending: Pending,
}

impl PageClient {
    /// Connects to `addr` (`host:port`) in plaintext without a password and
    /// enters the stream of a timeline.
    pub async fn connect(
        addr: &str,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<PageClient, ClientError> {
        Self::connect_secured(addr, tenant, timeline, &Security::default()).await
    }

    /// Connects to `addr` (`host:port`) with TLS and a token as `security`
    /// says, and enters the stream of a timeline.
    pub async fn connect_secured(
        addr: &str,
        tenant: TenantId,
        timeline: TimelineId,
        security: &Security,
    ) -> Result<PageClient, ClientError> {
        let socket = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Io(format!("connecting to {addr}: {e}")))?;
        let _ = socket.set_nodelay(true);
        let socket = match &security.tls {
            Some(config) => start_tls(socket, addr, config.clone()).await?,
            None => Box::new(socket) as BoxStream,
        };
        let mut stream = BufReader::new(socket);
        startup(&mut stream, security.token.as_deref()).await?;
        let query = format!("pagestream_v2 {tenant} {timeline}");
        let mut msg = BytesMut::new();
        msg.put_u8(b'Q');
        msg.put_u32((4 + query.len() + 1) as u32);
        msg.put_slice(query.as_bytes());
        msg.put_u8(0);
        write(&mut stream, &msg).await?;
        loop {
            match next_message(&mut stream).await? {
                (b'W', _) => break,
                (b'E', body) => return Err(server_error(&body)),
                (b'N', _) => {}
                (tag, _) => {
                    return Err(ClientError::Protocol(format!(
                        "message '{}' instead of CopyBothResponse",
                        tag.escape_ascii()
                    )))
                }
            }
        }
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::channel(QUEUE);
        let (rd, wr) = tokio::io::split(stream);
        tokio::spawn(write_loop(wr, rx, pending.clone()));
        tokio::spawn(read_loop(rd, pending.clone()));
        Ok(PageClient { tx, pending })
    }

    async fn call(&self, lsn: Lsn, kind: RequestKind) -> Result<ResponseKind, ClientError> {
        if let Some(error) = self.pending.lock().failed.clone() {
            return Err(error);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((lsn, kind, reply))
            .await
            .map_err(|_| ClientError::Closed("writer stopped".into()))?;
        match answer.await {
            Ok(Ok(ResponseKind::Error { sqlstate, message })) => {
                Err(ClientError::Server { sqlstate, message })
            }
            Ok(result) => result,
            Err(_) => Err(ClientError::Closed("no answer".into())),
        }
    }

    /// One page of a fork at `lsn`.
    pub async fn get_page(&self, tag: RelTag, blkno: u32, lsn: Lsn) -> Result<Bytes, ClientError> {
        match self.call(lsn, RequestKind::GetPage { tag, blkno }).await? {
            ResponseKind::Page(page) => Ok(page),
            _ => Err(ClientError::Unexpected("get page")),
        }
    }

    /// `count` consecutive pages (at most [`crate::pagestream::MAX_RANGE_PAGES`]).
    pub async fn get_pages(
        &self,
        tag: RelTag,
        blkno: u32,
        count: u32,
        lsn: Lsn,
    ) -> Result<Vec<Bytes>, ClientError> {
        let kind = RequestKind::GetPageRange { tag, blkno, count };
        match self.call(lsn, kind).await? {
            ResponseKind::Pages(pages) if pages.len() == count as usize => Ok(pages),
            _ => Err(ClientError::Unexpected("get page range")),
        }
    }

    /// Blocks in a fork (error 42P01 if it does not exist at `lsn`).
    pub async fn rel_size(&self, tag: RelTag, lsn: Lsn) -> Result<u32, ClientError> {
        match self.call(lsn, RequestKind::RelSize { tag }).await? {
            ResponseKind::RelSize(n) => Ok(n),
            _ => Err(ClientError::Unexpected("relation size")),
        }
    }

    pub async fn rel_exists(&self, tag: RelTag, lsn: Lsn) -> Result<bool, ClientError> {
        match self.call(lsn, RequestKind::RelExists { tag }).await? {
            ResponseKind::RelExists(e) => Ok(e),
            _ => Err(ClientError::Unexpected("relation exists")),
        }
    }

    /// Bytes of every fork of a database.
    pub async fn db_size(&self, spc_node: u32, db_node: u32, lsn: Lsn) -> Result<u64, ClientError> {
        match self
            .call(lsn, RequestKind::DbSize { spc_node, db_node })
            .await?
        {
            ResponseKind::DbSize(n) => Ok(n),
            _ => Err(ClientError::Unexpected("database size")),
        }
    }

    /// A lazy data directory at `lsn` (`None`: the last record LSN).
    pub async fn lazy_basebackup(&self, lsn: Option<Lsn>) -> Result<LazyBackup, ClientError> {
        let lsn = lsn.unwrap_or(Lsn::INVALID);
        match self.call(lsn, RequestKind::LazyBasebackup).await? {
            ResponseKind::LazyBasebackup(backup) => Ok(backup),
            _ => Err(ClientError::Unexpected("lazy base backup")),
        }
    }

    /// Every relation fork of every database with its size, in one request.
    pub async fn list_relations(&self, lsn: Lsn) -> Result<Vec<RelSizeEntry>, ClientError> {
        match self.call(lsn, RequestKind::ListRelations).await? {
            ResponseKind::Listing(entries) => Ok(entries),
            _ => Err(ClientError::Unexpected("relation listing")),
        }
    }
}

/// `SSLRequest`, then the TLS handshake, verifying the certificate names
/// the host of `addr`.
async fn start_tls(
    mut socket: TcpStream,
    addr: &str,
    config: Arc<tokio_rustls::rustls::ClientConfig>,
) -> Result<BoxStream, ClientError> {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| ClientError::Tls(format!("server name {host:?}: {e}")))?;
    socket.write_all(&SSL_REQUEST).await.map_err(io)?;
    match socket.read_u8().await.map_err(io)? {
        b'S' => {}
        b'N' => {
            return Err(ClientError::Tls(format!(
                "the page service at {addr} does not speak TLS"
            )))
        }
        other => {
            return Err(ClientError::Protocol(format!(
                "answer '{}' to SSLRequest",
                other.escape_ascii()
            )))
        }
    }
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, socket)
        .await
        .map_err(|e| ClientError::Tls(format!("handshake with {addr}: {e}")))?;
    Ok(Box::new(stream))
}

async fn write(stream: &mut BufReader<BoxStream>, bytes: &[u8]) -> Result<(), ClientError> {
    let socket = stream.get_mut();
    socket.write_all(bytes).await.map_err(io)?;
    socket.flush().await.map_err(io)
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Io(e.to_string())
}

async fn next_message<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(u8, Vec<u8>), ClientError> {
    match proto::read_message_limited(stream, MAX_ANSWER_BYTES).await? {
        Some(m) => Ok((m.tag, m.body)),
        None => Err(ClientError::Closed("server closed the connection".into())),
    }
}

/// Startup packet, the password if asked, then everything up to the first
/// ReadyForQuery.
async fn startup(
    stream: &mut BufReader<BoxStream>,
    token: Option<&str>,
) -> Result<(), ClientError> {
    let mut body = BytesMut::new();
    body.put_u32(196_608);
    for (k, v) in [
        ("user", "sediment"),
        ("database", "postgres"),
        ("application_name", "pagestream"),
    ] {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut packet = BytesMut::new();
    packet.put_u32(4 + body.len() as u32);
    packet.put_slice(&body);
    write(stream, &packet).await?;
    loop {
        match next_message(stream).await? {
            (b'Z', _) => return Ok(()),
            (b'E', body) => return Err(server_error(&body)),
            (b'R', body) if body.get(..4) == Some(&[0, 0, 0, 3]) => {
                let Some(token) = token else {
                    return Err(ClientError::Protocol(
                        "the page service asks for a password (JWT) and none was given".into(),
                    ));
                };
                let mut msg = BytesMut::new();
                msg.put_u8(b'p');
                msg.put_u32((4 + token.len() + 1) as u32);
                msg.put_slice(token.as_bytes());
                msg.put_u8(0);
                write(stream, &msg).await?;
            }
            (b'R', body) if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                return Err(ClientError::Protocol(
                    "the server asks for authentication this client does not do".into(),
                ))
            }
            _ => {}
        }
    }
}

/// The SQLSTATE and message of an ErrorResponse body.
fn server_error(body: &[u8]) -> ClientError {
    let (mut sqlstate, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        match field.split_first() {
            Some((b'C', v)) => sqlstate = String::from_utf8_lossy(v).into_owned(),
            Some((b'M', v)) => message = String::from_utf8_lossy(v).into_owned(),
            _ => {}
        }
    }
    ClientError::Server { sqlstate, message }
}

async fn write_loop(
    mut wr: tokio::io::WriteHalf<BufReader<BoxStream>>,
    mut rx: mpsc::Receiver<(Lsn, RequestKind, Reply)>,
    pending: Pending,
) {
    let mut next_id = 0u32;
    let mut buf = BytesMut::new();
    let mut payload = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut item = Some(first);
        while let Some((lsn, kind, reply)) = item.take() {
            next_id = next_id.wrapping_add(1);
            let request = Request {
                id: next_id,
                lsn,
                kind,
            };
            {
                let mut state = pending.lock();
                if let Some(error) = state.failed.clone() {
                    let _ = reply.send(Err(error));
                    continue;
                }
                state.waiting.insert(next_id, reply);
            }
            payload.clear();
            request.encode(&mut payload);
            buf.put_u8(b'd');
            buf.put_u32(4 + payload.len() as u32);
            buf.put_slice(&payload);
            if buf.len() < 64 * 1024 {
                item = rx.try_recv().ok();
            }
        }
        if let Err(e) = async {
            wr.write_all(&buf).await?;
            wr.flush().await
        }
        .await
        {
            pending.lock().fail_all(ClientError::Io(e.to_string()));
            return;
        }
        buf.clear();
    }
}

async fn read_loop(mut rd: tokio::io::ReadHalf<BufReader<BoxStream>>, pending: Pending) {
    let error = loop {
        let (tag, body) = match next_message(&mut rd).await {
            Ok(m) => m,
            Err(e) => break e,
        };
        match tag {
            b'd' => match Response::decode(&body) {
                Ok(response) => {
                    let reply = pending.lock().waiting.remove(&response.id);
                    match reply {
                        Some(reply) => {
                            let _ = reply.send(Ok(response.kind));
                        }
                        None => {
                            break ClientError::Protocol(format!(
                                "answer to unknown request {}",
                                response.id
                            ))
                        }
                    }
                }
                Err(e) => break ClientError::Protocol(e.to_string()),
            },
            b'E' => break server_error(&body),
            b'N' => {}
            other => {
                break ClientError::Protocol(format!(
                    "message '{}' inside pagestream",
                    other.escape_ascii()
                ))
            }
        }
    };
    pending.lock().fail_all(error);
}
