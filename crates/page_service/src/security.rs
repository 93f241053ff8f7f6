//! Transport security and authentication of page service connections.
//!
//! - **TLS**: when configured, every connection must open with an
//!   `SSLRequest` (libpq `sslmode=require` or stronger); it is answered `S`
//!   and the TLS handshake follows. A client starting in plaintext gets a
//!   FATAL error saying TLS is required, and the connection closes.
//! - **JWT as the password**: when configured, the server asks for a
//!   cleartext password (`AuthenticationCleartextPassword`) and validates it
//!   as a JWT; the tenant the connection names (or a `pagestream_get`
//!   names) must be one the token allows. Without TLS the token crosses the
//!   network in clear text: the pageserver warns about that at startup.

use std::time::Duration;

use auth::{Claims, JwtAuth};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::connection::ClientError;
use crate::proto::{self, Out, ProtocolError};

/// A client connection, plain or TLS.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> ClientStream for T {}

/// A boxed [`ClientStream`].
pub type BoxStream = Box<dyn ClientStream>;

/// The TLS acceptor of the page service.
#[derive(Clone)]
pub struct PageServiceTls(pub TlsAcceptor);

impl std::fmt::Debug for PageServiceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageServiceTls")
    }
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// Wraps `socket` in TLS, refusing clients that do not ask for it.
pub(crate) async fn negotiate_tls(
    mut socket: TcpStream,
    tls: &PageServiceTls,
    deadline: Duration,
) -> Result<BoxStream, ProtocolError> {
    let timed_out = || ProtocolError::Violation("no TLS handshake in time".into());
    tokio::time::timeout(deadline, async {
        loop {
            let len = socket.read_u32().await?;
            let code = socket.read_u32().await?;
            match (len, code) {
                (8, SSL_REQUEST) => {
                    socket.write_all(b"S").await?;
                    let stream = tls.0.accept(socket).await?;
                    return Ok(Box::new(stream) as BoxStream);
                }
                (8, GSSENC_REQUEST) => socket.write_all(b"N").await?,
                _ => {
                    let mut out = Out::default();
                    out.error(
                        "FATAL",
                        "28000",
                        "this page service accepts TLS connections only: connect with sslmode=require",
                    );
                    out.flush_to(&mut socket).await?;
                    return Err(ProtocolError::Violation(
                        "plaintext connection to a TLS page service".into(),
                    ));
                }
            }
        }
    })
    .await
    .map_err(|_| timed_out())?
}

/// Asks for the password and validates it as a JWT.
pub(crate) async fn authenticate<S>(
    stream: &mut S,
    out: &mut Out,
    jwt: &JwtAuth,
) -> Result<Claims, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |error: std::io::Error| ClientError::new("08006", error.to_string());
    out.auth_cleartext_password();
    out.flush_to(stream).await.map_err(io)?;
    let message = proto::read_message(stream)
        .await
        .map_err(|error| ClientError::new("08P01", error.to_string()))?;
    let password = match message {
        Some(message) if message.tag == b'p' => proto::query_text(&message.body)
            .map_err(|error| ClientError::new("08P01", error.to_string()))?,
        _ => {
            return Err(ClientError::new(
                "28P01",
                "password authentication failed: expected a password message (the JWT)",
            ))
        }
    };
    jwt.decode(password.trim()).map_err(|error| {
        ClientError::new(
            "28P01",
            format!("password authentication failed: the password must be a valid JWT ({error})"),
        )
    })
}

/// Whether `claims` (absent when auth is off) reach `tenant`.
pub(crate) fn authorize(
    claims: Option<&Claims>,
    tenant: storage::TenantId,
) -> Result<(), ClientError> {
    match claims {
        None => Ok(()),
        Some(claims) => claims
            .check_tenant(Some(&tenant.to_string()))
            .map_err(|error| ClientError::new("28000", error.to_string())),
    }
}
