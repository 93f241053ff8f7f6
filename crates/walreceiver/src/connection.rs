//! One replication connection to PostgreSQL: TCP or Unix socket, startup
//! with `replication=true`, authentication (cleartext, MD5, SCRAM-SHA-256),
//! simple queries for the replication commands, and the CopyBoth stream.
//! Message encoding and parsing come from `postgres-protocol`; this module
//! only sequences them.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{self, ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use postgres_wal::Lsn;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::connstr::ConnectionConfig;
use crate::error::ReceiverError;

/// How long connecting plus startup may take when the connection string
/// gives no `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one replication command (IDENTIFY_SYSTEM, …) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest backend message we accept; WAL messages are at most 128 kB.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// SQLSTATE duplicate_object: the replication slot already exists.
const DUPLICATE_OBJECT: &str = "42710";

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A backend message, including CopyBothResponse, which `postgres-protocol`
/// does not parse.
pub(crate) enum Backend {
    Message(Message),
    CopyBothResponse,
}

/// What `IDENTIFY_SYSTEM` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) system_id: u64,
    pub(crate) timeline: u32,
    pub(crate) xlogpos: Lsn,
}

/// An authenticated replication connection.
pub(crate) struct Connection {
    stream: Box<dyn Stream>,
    address: String,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    parameters: HashMap<String, String>,
}

impl Connection {
    /// Connects, starts up in physical replication mode and authenticates.
    pub(crate) async fn connect(
        config: &ConnectionConfig,
        application_name: &str,
    ) -> Result<Connection, ReceiverError> {
        let timeout = config.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let address = config.address();
        tokio::time::timeout(timeout, Self::connect_inner(config, application_name))
            .await
            .map_err(|_| ReceiverError::Timeout {
                address,
                what: "connection and startup",
            })?
    }

    async fn connect_inner(
        config: &ConnectionConfig,
        application_name: &str,
    ) -> Result<Connection, ReceiverError> {
        let address = config.address();
        let stream: Box<dyn Stream> = if config.is_unix_socket() {
            let stream =
                UnixStream::connect(&address)
                    .await
                    .map_err(|source| ReceiverError::Connect {
                        address: address.clone(),
                        source,
                    })?;
            Box::new(stream)
        } else {
            let stream = TcpStream::connect((config.host.as_str(), config.port))
                .await
                .map_err(|source| ReceiverError::Connect {
                    address: address.clone(),
                    source,
                })?;
            // Status updates are small and latency-critical (commits wait on them).
            let _ = stream.set_nodelay(true);
            Box::new(stream)
        };
        let mut connection = Connection {
            stream,
            address,
            read_buffer: BytesMut::with_capacity(256 * 1024),
            write_buffer: BytesMut::new(),
            parameters: HashMap::new(),
        };
        connection.startup(config, application_name).await?;
        Ok(connection)
    }

    /// `host:port` or socket path, for messages.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The server's `server_version` parameter.
    pub(crate) fn server_version(&self) -> Option<&str> {
        self.parameters.get("server_version").map(String::as_str)
    }

    async fn startup(
        &mut self,
        config: &ConnectionConfig,
        application_name: &str,
    ) -> Result<(), ReceiverError> {
        let parameters = [
            ("user", config.user.as_str()),
            ("replication", "true"),
            ("application_name", application_name),
        ];
        frontend::startup_message(parameters, &mut self.write_buffer)
            .map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        self.authenticate(config).await?;
        loop {
            match self.read_message().await? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::BackendKeyData(_) => {}
                Message::ErrorResponse(body) => return Err(self.server_error(&body)),
                other => return Err(self.unexpected("startup", &other)),
            }
        }
    }

    async fn authenticate(&mut self, config: &ConnectionConfig) -> Result<(), ReceiverError> {
        let password = || {
            config
                .password
                .as_deref()
                .ok_or_else(|| ReceiverError::Authentication {
                    address: config.address(),
                    reason: "the server asks for a password and the connection string has none"
                        .to_owned(),
                })
        };
        match self.read_message().await? {
            Message::AuthenticationOk => Ok(()),
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?.as_bytes(), &mut self.write_buffer)
                    .map_err(|e| self.protocol(e.to_string()))?;
                self.flush().await?;
                self.expect_auth_ok().await
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(config.user.as_bytes(), password()?.as_bytes(), body.salt());
                frontend::password_message(hash.as_bytes(), &mut self.write_buffer)
                    .map_err(|e| self.protocol(e.to_string()))?;
                self.flush().await?;
                self.expect_auth_ok().await
            }
            Message::AuthenticationSasl(body) => {
                let mechanisms: Vec<String> = body
                    .mechanisms()
                    .map(|m| Ok(m.to_owned()))
                    .collect()
                    .map_err(|e| self.protocol(e.to_string()))?;
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(
                        self.auth_error(format!("unsupported SASL mechanisms {mechanisms:?}"))
                    );
                }
                self.scram(password()?).await
            }
            Message::ErrorResponse(body) => Err(self.server_error(&body)),
            other => Err(self.auth_error(format!(
                "unsupported authentication request ({})",
                message_name(&other)
            ))),
        }
    }

    async fn scram(&mut self, password: &str) -> Result<(), ReceiverError> {
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut self.write_buffer)
            .map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        match self.read_message().await? {
            Message::AuthenticationSaslContinue(body) => scram
                .update(body.data())
                .map_err(|e| self.auth_error(e.to_string()))?,
            Message::ErrorResponse(body) => return Err(self.server_error(&body)),
            other => return Err(self.unexpected("SCRAM exchange", &other)),
        }
        frontend::sasl_response(scram.message(), &mut self.write_buffer)
            .map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        match self.read_message().await? {
            Message::AuthenticationSaslFinal(body) => scram
                .finish(body.data())
                .map_err(|e| self.auth_error(e.to_string()))?,
            Message::ErrorResponse(body) => return Err(self.server_error(&body)),
            other => return Err(self.unexpected("SCRAM exchange", &other)),
        }
        self.expect_auth_ok().await
    }

    async fn expect_auth_ok(&mut self) -> Result<(), ReceiverError> {
        match self.read_message().await? {
            Message::AuthenticationOk => Ok(()),
            Message::ErrorResponse(body) => Err(self.server_error(&body)),
            other => Err(self.unexpected("authentication", &other)),
        }
    }

    /// Runs one simple-query command and returns its rows as text.
    pub(crate) async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReceiverError> {
        let address = self.address.clone();
        tokio::time::timeout(COMMAND_TIMEOUT, self.simple_query_inner(sql))
            .await
            .map_err(|_| ReceiverError::Timeout {
                address,
                what: "replication command",
            })?
    }

    async fn simple_query_inner(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReceiverError> {
        frontend::query(sql, &mut self.write_buffer).map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.read_message().await? {
                Message::RowDescription(_) | Message::CommandComplete(_) => {}
                Message::EmptyQueryResponse => {}
                Message::DataRow(body) => rows.push(self.data_row(&body)?),
                // Keep reading to ReadyForQuery so the connection stays usable.
                Message::ErrorResponse(body) => error = Some(self.server_error(&body)),
                Message::ReadyForQuery(_) => break,
                other => return Err(self.unexpected(sql, &other)),
            }
        }
        match error {
            Some(error) => Err(error),
            None => Ok(rows),
        }
    }

    fn data_row(&self, body: &backend::DataRowBody) -> Result<Vec<Option<String>>, ReceiverError> {
        let buffer = body.buffer();
        body.ranges()
            .map(|range| {
                Ok(range
                    .and_then(|r| buffer.get(r))
                    .map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
            })
            .collect()
            .map_err(|e: std::io::Error| self.protocol(e.to_string()))
    }

    /// `IDENTIFY_SYSTEM`.
    pub(crate) async fn identify_system(&mut self) -> Result<Identity, ReceiverError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = match rows.as_slice() {
            [row] if row.len() >= 3 => row,
            _ => return Err(self.protocol(format!("IDENTIFY_SYSTEM returned {rows:?}"))),
        };
        let field = |i: usize| row[i].as_deref().unwrap_or_default();
        let parsed = (
            field(0).parse::<u64>(),
            field(1).parse::<u32>(),
            field(2).parse::<Lsn>(),
        );
        match parsed {
            (Ok(system_id), Ok(timeline), Ok(xlogpos)) => Ok(Identity {
                system_id,
                timeline,
                xlogpos,
            }),
            _ => Err(self.protocol(format!("IDENTIFY_SYSTEM returned {row:?}"))),
        }
    }

    /// `CREATE_REPLICATION_SLOT … PHYSICAL RESERVE_WAL`; an existing slot is fine.
    pub(crate) async fn create_physical_slot(&mut self, slot: &str) -> Result<(), ReceiverError> {
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} PHYSICAL RESERVE_WAL",
            quote_identifier(slot)
        );
        match self.simple_query(&sql).await {
            Ok(_) => Ok(()),
            Err(ReceiverError::Server { code, .. }) if code == DUPLICATE_OBJECT => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `START_REPLICATION SLOT s PHYSICAL X/Y TIMELINE n`; on success the
    /// connection is in CopyBoth mode.
    pub(crate) async fn start_replication(
        &mut self,
        slot: &str,
        start: Lsn,
        timeline: u32,
    ) -> Result<(), ReceiverError> {
        let sql = format!(
            "START_REPLICATION SLOT {} PHYSICAL {start} TIMELINE {timeline}",
            quote_identifier(slot)
        );
        frontend::query(&sql, &mut self.write_buffer).map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        let mut error = None;
        loop {
            match self.read_backend().await? {
                Backend::CopyBothResponse => return Ok(()),
                Backend::Message(Message::ErrorResponse(body)) => {
                    error = Some(self.server_error(&body))
                }
                Backend::Message(Message::ReadyForQuery(_)) => {
                    return Err(error.unwrap_or_else(|| {
                        self.protocol("START_REPLICATION ended without streaming".to_owned())
                    }))
                }
                Backend::Message(other) => return Err(self.unexpected(&sql, &other)),
            }
        }
    }

    /// Next CopyData payload of the stream; `Ok(None)` when the server ended
    /// the stream (CopyDone). Cancel-safe: partial input stays buffered.
    pub(crate) async fn read_copy_data(&mut self) -> Result<Option<Bytes>, ReceiverError> {
        match self.read_message().await? {
            Message::CopyData(body) => Ok(Some(body.into_bytes())),
            // A walsender shutting down ends the COPY and may say
            // CommandComplete without waiting for our CopyDone: both are
            // the server ending the stream, not a protocol error.
            Message::CopyDone | Message::CommandComplete(_) => Ok(None),
            Message::ErrorResponse(body) => Err(self.server_error(&body)),
            other => Err(self.unexpected("streaming", &other)),
        }
    }

    /// Sends one CopyData message.
    pub(crate) async fn send_copy_data(&mut self, payload: Bytes) -> Result<(), ReceiverError> {
        frontend::CopyData::new(payload)
            .map_err(|e| self.protocol(e.to_string()))?
            .write(&mut self.write_buffer);
        self.flush().await
    }

    /// Says goodbye (Terminate) and closes; errors are irrelevant by now.
    pub(crate) async fn terminate(mut self) {
        frontend::terminate(&mut self.write_buffer);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }

    /// Next message other than notices and parameter changes (recorded).
    async fn read_message(&mut self) -> Result<Message, ReceiverError> {
        match self.read_backend().await? {
            Backend::Message(message) => Ok(message),
            Backend::CopyBothResponse => {
                Err(self.protocol("unexpected CopyBothResponse".to_owned()))
            }
        }
    }

    async fn read_backend(&mut self) -> Result<Backend, ReceiverError> {
        loop {
            if let Some(backend) = self.parse_buffered()? {
                match backend {
                    Backend::Message(Message::NoticeResponse(body)) => {
                        let text = fields_text(body.fields());
                        tracing::info!(address = %self.address, "WAL source notice: {text}");
                    }
                    Backend::Message(Message::ParameterStatus(body)) => {
                        if let (Ok(name), Ok(value)) = (body.name(), body.value()) {
                            self.parameters.insert(name.to_owned(), value.to_owned());
                        }
                    }
                    other => return Ok(other),
                }
                continue;
            }
            let read = self
                .stream
                .read_buf(&mut self.read_buffer)
                .await
                .map_err(|source| self.io_error(source))?;
            if read == 0 {
                return Err(ReceiverError::Closed {
                    address: self.address.clone(),
                });
            }
        }
    }

    fn parse_buffered(&mut self) -> Result<Option<Backend>, ReceiverError> {
        let header =
            backend::Header::parse(&self.read_buffer).map_err(|e| self.protocol(e.to_string()))?;
        let Some(header) = header else {
            return Ok(None);
        };
        let total = usize::try_from(header.len())
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        if total > MAX_MESSAGE_BYTES {
            return Err(self.protocol(format!("message of {total} bytes")));
        }
        if header.tag() == b'W' {
            if self.read_buffer.len() < total {
                self.read_buffer.reserve(total - self.read_buffer.len());
                return Ok(None);
            }
            self.read_buffer.advance(total);
            return Ok(Some(Backend::CopyBothResponse));
        }
        Message::parse(&mut self.read_buffer)
            .map(|message| message.map(Backend::Message))
            .map_err(|e| self.protocol(e.to_string()))
    }

    async fn flush(&mut self) -> Result<(), ReceiverError> {
        let buffer = self.write_buffer.split().freeze();
        self.stream
            .write_all(&buffer)
            .await
            .map_err(|source| self.io_error(source))?;
        self.stream
            .flush()
            .await
            .map_err(|source| self.io_error(source))
    }

    fn io_error(&self, source: std::io::Error) -> ReceiverError {
        ReceiverError::Io {
            address: self.address.clone(),
            source,
        }
    }

    fn protocol(&self, reason: String) -> ReceiverError {
        ReceiverError::Protocol {
            address: self.address.clone(),
            reason,
        }
    }

    fn auth_error(&self, reason: String) -> ReceiverError {
        ReceiverError::Authentication {
            address: self.address.clone(),
            reason,
        }
    }

    fn unexpected(&self, during: &str, message: &Message) -> ReceiverError {
        self.protocol(format!(
            "unexpected {} during {during}",
            message_name(message)
        ))
    }

    fn server_error(&self, body: &ErrorResponseBody) -> ReceiverError {
        let mut severity = String::from("ERROR");
        let mut code = String::new();
        let mut message = String::new();
        let mut fields = body.fields();
        while let Ok(Some(field)) = fields.next() {
            match field.type_() {
                b'V' => severity = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                _ => {}
            }
        }
        let error = ReceiverError::Server {
            address: self.address.clone(),
            severity,
            code,
            message,
        };
        // Password failures arrive as FATAL 28P01/28000: say so plainly.
        match &error {
            ReceiverError::Server { code, message, .. } if code.starts_with("28") => {
                self.auth_error(message.clone())
            }
            _ => error,
        }
    }
}

fn fields_text(mut fields: backend::ErrorFields<'_>) -> String {
    let mut text = String::new();
    while let Ok(Some(field)) = fields.next() {
        if field.type_() == b'M' {
            text.push_str(&String::from_utf8_lossy(field.value_bytes()));
        }
    }
    text
}

/// A replication-command identifier in double quotes.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn message_name(message: &Message) -> &'static str {
    match message {
        Message::AuthenticationOk => "AuthenticationOk",
        Message::AuthenticationKerberosV5 => "AuthenticationKerberosV5",
        Message::AuthenticationScmCredential => "AuthenticationScmCredential",
        Message::AuthenticationGss | Message::AuthenticationGssContinue(_) => "AuthenticationGSS",
        Message::AuthenticationSspi => "AuthenticationSSPI",
        Message::CopyData(_) => "CopyData",
        Message::CopyDone => "CopyDone",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::DataRow(_) => "DataRow",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        Message::CommandComplete(_) => "CommandComplete",
        _ => "message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_connection(input: &[u8]) -> Connection {
        let (ours, _theirs) = tokio::io::duplex(64);
        Connection {
            stream: Box::new(ours),
            address: "test".to_owned(),
            read_buffer: BytesMut::from(input),
            write_buffer: BytesMut::new(),
            parameters: HashMap::new(),
        }
    }

    #[test]
    fn copy_both_response_and_huge_lengths() {
        // 'W' format 0, no columns; then a message claiming 2 GiB.
        let mut connection = offline_connection(b"W\0\0\0\x07\0\0\0Z\x7f\xff\xff\xff");
        assert!(matches!(
            connection.parse_buffered(),
            Ok(Some(Backend::CopyBothResponse))
        ));
        assert!(matches!(
            connection.parse_buffered(),
            Err(ReceiverError::Protocol { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_server_bytes_never_panics(
            messages in proptest::collection::vec(
                (
                    proptest::sample::select(b"RSKZTDCEdcWNtnsAGH123Xx".to_vec()),
                    proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                ),
                0..8,
            ),
        ) {
            // Well-framed messages of every tag with arbitrary bodies.
            let mut bytes = Vec::new();
            for (tag, body) in &messages {
                bytes.push(*tag);
                bytes.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
                bytes.extend_from_slice(body);
            }
            let mut connection = offline_connection(&bytes);
            for _ in 0..256 {
                match connection.parse_buffered() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("pageserver"), "\"pageserver\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
