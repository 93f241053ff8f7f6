//! The server side of the PostgreSQL v3 wire protocol, as much as a
//! replication client and `psql` need: the startup handshake, messages in
//! and out, and builders for result sets, errors and COPY framing.
//!
//! Every length read from the network is checked against a limit before
//! anything is allocated, so a hostile client gets an error, never an
//! out-of-memory or a panic.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Protocol version 3.0 in a startup packet.
const PROTOCOL_V3: u32 = 196_608;
/// Request codes that take the place of a protocol version.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Largest startup packet PostgreSQL itself accepts (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP_PACKET_BYTES: u32 = 10_000;
/// Largest message we accept from a client: our commands are short.
pub const MAX_MESSAGE_BYTES: u32 = 1 << 20;

/// Type OIDs used in our row descriptions.
pub const TEXT_OID: u32 = 25;
pub const INT4_OID: u32 = 23;
pub const INT8_OID: u32 = 20;
pub const OID_OID: u32 = 26;
pub const BYTEA_OID: u32 = 17;

/// Why talking to a client failed (the connection is then closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("connection I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Violation(String),
    #[error("client sent a cancel request")]
    CancelRequest,
}

/// The parameters of a v3 startup packet (`user`, `database`, `options`,
/// `replication`, `application_name`, ...).
pub type StartupParams = HashMap<String, String>;

/// Reads the startup packet, answering 'N' to SSL and GSSAPI encryption
/// requests (we speak plain TCP) until the real one arrives.
pub async fn read_startup<S>(stream: &mut S) -> Result<StartupParams, ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let len = stream.read_u32().await?;
        if !(8..=MAX_STARTUP_PACKET_BYTES).contains(&len) {
            return Err(ProtocolError::Violation(format!(
                "startup packet length {len}"
            )));
        }
        let mut body = vec![0u8; len as usize - 4];
        stream.read_exact(&mut body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                stream.write_all(b"N").await?;
                stream.flush().await?;
            }
            CANCEL_REQUEST => return Err(ProtocolError::CancelRequest),
            PROTOCOL_V3 => return parse_startup_params(&body[4..]),
            other => {
                return Err(ProtocolError::Violation(format!(
                    "unsupported protocol version {}.{}",
                    other >> 16,
                    other & 0xffff
                )))
            }
        }
    }
}

fn parse_startup_params(mut body: &[u8]) -> Result<StartupParams, ProtocolError> {
    let violation = |what: &str| ProtocolError::Violation(format!("startup packet: {what}"));
    let mut params = StartupParams::new();
    loop {
        let key = take_cstr(&mut body).ok_or_else(|| violation("missing terminator"))?;
        if key.is_empty() {
            return Ok(params);
        }
        let value = take_cstr(&mut body).ok_or_else(|| violation("parameter without value"))?;
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| violation("not UTF-8"));
        params.insert(text(key)?, text(value)?);
    }
}

/// Splits a NUL-terminated string off the front of `body`.
fn take_cstr<'a>(body: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = body.iter().position(|b| *b == 0)?;
    let (s, rest) = body.split_at(end);
    *body = &rest[1..];
    Some(s)
}

/// One message from the client after startup.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
}

/// Reads the next message; `None` when the client closed the connection
/// cleanly between messages.
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<Message>, ProtocolError> {
    read_message_limited(stream, MAX_MESSAGE_BYTES).await
}

/// [`read_message`] with another size limit (clients reading answers).
pub async fn read_message_limited<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_bytes: u32,
) -> Result<Option<Message>, ProtocolError> {
    let tag = match stream.read_u8().await {
        Ok(tag) => tag,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = stream.read_u32().await?;
    if !(4..=max_bytes).contains(&len) {
        return Err(ProtocolError::Violation(format!(
            "message '{}' of length {len}",
            tag.escape_ascii()
        )));
    }
    let mut body = vec![0u8; len as usize - 4];
    stream.read_exact(&mut body).await?;
    Ok(Some(Message { tag, body }))
}

/// The text of a simple Query message (without its terminating NUL).
pub fn query_text(body: &[u8]) -> Result<String, ProtocolError> {
    let text = body.strip_suffix(&[0]).unwrap_or(body);
    String::from_utf8(text.to_vec())
        .map_err(|_| ProtocolError::Violation("query is not valid UTF-8".into()))
}

/// Builds outgoing messages into one buffer, flushed by the caller.
#[derive(Default)]
pub struct Out {
    pub buf: BytesMut,
}

impl Out {
    fn message(&mut self, tag: u8, body: impl FnOnce(&mut BytesMut)) {
        self.buf.put_u8(tag);
        let len_at = self.buf.len();
        self.buf.put_u32(0);
        body(&mut self.buf);
        let len = (self.buf.len() - len_at) as u32;
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// AuthenticationCleartextPassword: asks the client for its password.
    pub fn auth_cleartext_password(&mut self) {
        self.message(b'R', |b| b.put_u32(3));
    }

    pub fn auth_ok(&mut self) {
        self.message(b'R', |b| b.put_u32(0));
    }

    pub fn parameter_status(&mut self, name: &str, value: &str) {
        self.message(b'S', |b| {
            put_cstr(b, name);
            put_cstr(b, value);
        });
    }

    pub fn backend_key_data(&mut self, pid: u32, key: u32) {
        self.message(b'K', |b| {
            b.put_u32(pid);
            b.put_u32(key);
        });
    }

    pub fn ready_for_query(&mut self) {
        self.message(b'Z', |b| b.put_u8(b'I'));
    }

    /// A RowDescription of text-format columns `(name, type oid, typlen)`.
    pub fn row_description(&mut self, columns: &[(&str, u32, i16)]) {
        self.message(b'T', |b| {
            b.put_u16(columns.len() as u16);
            for (name, type_oid, typlen) in columns {
                put_cstr(b, name);
                b.put_u32(0); // table oid
                b.put_u16(0); // attribute number
                b.put_u32(*type_oid);
                b.put_i16(*typlen);
                b.put_i32(-1); // type modifier
                b.put_u16(0); // text format
            }
        });
    }

    /// A DataRow; `None` is SQL NULL.
    pub fn data_row(&mut self, values: &[Option<&str>]) {
        self.message(b'D', |b| {
            b.put_u16(values.len() as u16);
            for value in values {
                match value {
                    Some(v) => {
                        b.put_u32(v.len() as u32);
                        b.put_slice(v.as_bytes());
                    }
                    None => b.put_i32(-1),
                }
            }
        });
    }

    pub fn command_complete(&mut self, tag: &str) {
        self.message(b'C', |b| put_cstr(b, tag));
    }

    pub fn empty_query(&mut self) {
        self.message(b'I', |_| {});
    }

    /// An ErrorResponse (or a FATAL one before closing).
    pub fn error(&mut self, severity: &str, code: &str, message: &str) {
        self.message(b'E', |b| {
            for (field, value) in [
                (b'S', severity),
                (b'V', severity),
                (b'C', code),
                (b'M', message),
            ] {
                b.put_u8(field);
                put_cstr(b, value);
            }
            b.put_u8(0);
        });
    }

    /// CopyOutResponse with no columns, as the walsender sends it.
    pub fn copy_out_response(&mut self) {
        self.message(b'H', |b| {
            b.put_u8(0);
            b.put_u16(0);
        });
    }

    /// CopyData whose payload starts with a BASE_BACKUP stream type byte.
    pub fn copy_data(&mut self, kind: u8, payload: &[u8]) {
        self.message(b'd', |b| {
            b.put_u8(kind);
            b.put_slice(payload);
        });
    }

    /// CopyBothResponse (binary, no columns): the `pagestream_v2` stream
    /// starts.
    pub fn copy_both_response(&mut self) {
        self.message(b'W', |b| {
            b.put_u8(1);
            b.put_u16(0);
        });
    }

    /// CopyData with an opaque payload.
    pub fn copy_data_raw(&mut self, payload: &[u8]) {
        self.message(b'd', |b| b.put_slice(payload));
    }

    pub fn copy_done(&mut self) {
        self.message(b'c', |_| {});
    }

    /// Writes the buffered messages and empties the buffer.
    pub async fn flush_to<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> std::io::Result<()> {
        stream.write_all(&self.buf).await?;
        stream.flush().await?;
        self.buf.clear();
        Ok(())
    }
}

fn put_cstr(b: &mut BytesMut, s: &str) {
    // A NUL inside would end the string early on the client; drop them.
    b.extend(s.bytes().filter(|c| *c != 0));
    b.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn startup_answers_ssl_with_n_then_reads_params() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut packet = Vec::new();
        packet.extend_from_slice(&8u32.to_be_bytes());
        packet.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        let body = b"user\0postgres\0replication\0true\0\0";
        packet.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
        packet.extend_from_slice(&PROTOCOL_V3.to_be_bytes());
        packet.extend_from_slice(body);
        client.write_all(&packet).await.unwrap();
        let params = read_startup(&mut server).await.unwrap();
        assert_eq!(params["user"], "postgres");
        assert_eq!(params["replication"], "true");
        let mut answer = [0u8; 1];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
    }

    #[tokio::test]
    async fn oversized_or_truncated_input_is_an_error() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_startup(&mut server).await,
            Err(ProtocolError::Violation(_))
        ));
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"Q\0\0\0\x02").await.unwrap();
        assert!(read_message(&mut server).await.is_err());
        drop(client);
        let (client, mut server) = tokio::io::duplex(1024);
        drop(client);
        assert!(read_message(&mut server).await.unwrap().is_none());
    }

    #[test]
    fn messages_carry_their_length() {
        let mut out = Out::default();
        out.command_complete("SELECT 1");
        assert_eq!(&out.buf[..], b"C\0\0\0\x0dSELECT 1\0");
        assert!(parse_startup_params(b"user\0").is_err());
    }
}
