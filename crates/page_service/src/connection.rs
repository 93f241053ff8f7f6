//! One client connection: startup, naming the timeline, then a loop of
//! simple queries until the client leaves or the service shuts down.

use std::sync::Arc;

use postgres_wal::control::ControlFile;
use postgres_wal::Lsn;
use storage::{GetError, Key, Timeline};
use tokio::io::BufReader;

use crate::backup::send_base_backup;
use crate::command::{self, Command, CommandError, PageRequest};
use crate::naming::{self, SessionTarget};
use crate::proto::{self, Out, ProtocolError, BYTEA_OID, INT4_OID, TEXT_OID};
use crate::security::{self, BoxStream};
use crate::server::Shared;

/// An error to report to the client as an ErrorResponse.
#[derive(Debug)]
pub(crate) struct ClientError {
    pub code: &'static str,
    pub message: String,
}

impl ClientError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
        }
    }

    /// A storage read error with the SQLSTATE that best describes it.
    pub fn from_get(error: &GetError) -> ClientError {
        let code = match error {
            GetError::LsnAhead { .. } | GetError::BelowGcCutoff { .. } => "22023",
            GetError::KeyNotFound { .. } => "42704",
            GetError::ShuttingDown | GetError::Cancelled => "57P01",
            _ if crate::corruption::is_corrupt_read(error) => crate::corruption::DATA_CORRUPTED,
            _ => "XX000",
        };
        ClientError::new(code, error.to_string())
    }
}

impl From<CommandError> for ClientError {
    fn from(e: CommandError) -> ClientError {
        ClientError::new(e.code, e.message)
    }
}

/// How handling a query ended.
pub(crate) enum Outcome {
    /// Answered (successfully or with an ErrorResponse already queued).
    Done,
    /// The connection must close (I/O failure or shutdown).
    Close,
}

pub(crate) struct Connection {
    pub stream: BufReader<BoxStream>,
    pub out: Out,
    pub shared: Arc<Shared>,
    pub replication: bool,
    pub target: Option<(SessionTarget, Arc<Timeline>)>,
    /// The token's claims, when the page service requires one.
    pub claims: Option<auth::Claims>,
}

impl Connection {
    pub fn new(socket: BoxStream, shared: Arc<Shared>) -> Connection {
        Connection {
            stream: BufReader::new(socket),
            out: Out::default(),
            shared,
            replication: false,
            target: None,
            claims: None,
        }
    }

    /// Serves the connection to its end; never panics on client input.
    pub async fn run(mut self) {
        let shutdown = self.shared.shutdown.clone();
        tokio::select! {
            result = self.serve() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "page service connection ended");
                }
            }
            _ = shutdown.cancelled() => {
                self.out.buf.clear();
                self.out.error("FATAL", "57P01", "terminating connection: the pageserver is shutting down");
                let _ = self.out.flush_to(self.stream.get_mut()).await;
            }
        }
    }

    async fn serve(&mut self) -> Result<(), ProtocolError> {
        let timeout = self.shared.config.startup_timeout;
        let params = tokio::time::timeout(timeout, proto::read_startup(&mut self.stream))
            .await
            .map_err(|_| ProtocolError::Violation("no startup packet in time".into()))??;
        if let Some(jwt) = self.shared.config.jwt.clone() {
            let asked = security::authenticate(&mut self.stream, &mut self.out, &jwt);
            let answer = tokio::time::timeout(timeout, asked)
                .await
                .unwrap_or_else(|_| {
                    Err(ClientError::new("28P01", "no password (JWT) sent in time"))
                });
            match answer {
                Ok(claims) => self.claims = Some(claims),
                Err(error) => {
                    self.out.error("FATAL", error.code, &error.message);
                    self.out.flush_to(self.stream.get_mut()).await?;
                    return Ok(());
                }
            }
        }
        if let Err(error) = self.start_session(&params).await {
            self.out.error("FATAL", error.code, &error.message);
            self.out.flush_to(self.stream.get_mut()).await?;
            return Ok(());
        }
        self.greet(&params);
        self.out.flush_to(self.stream.get_mut()).await?;
        while let Some(message) = proto::read_message(&mut self.stream).await? {
            match message.tag {
                b'Q' => {
                    let text = proto::query_text(&message.body)?;
                    if let Outcome::Close = self.query(&text).await? {
                        return Ok(());
                    }
                    self.out.ready_for_query();
                    self.out.flush_to(self.stream.get_mut()).await?;
                }
                b'X' => return Ok(()),
                other => {
                    // The extended protocol would need a state machine we do
                    // not have; say so and close rather than desynchronise.
                    self.out.error(
                        "FATAL",
                        "0A000",
                        &format!(
                            "message type '{}' is not supported; use the simple query protocol",
                            other.escape_ascii()
                        ),
                    );
                    self.out.flush_to(self.stream.get_mut()).await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reads the naming parameters and, for replication connections,
    /// resolves the timeline up front so a wrong name fails at connect time.
    async fn start_session(&mut self, params: &proto::StartupParams) -> Result<(), ClientError> {
        self.replication = params
            .get("replication")
            .is_some_and(|v| naming::is_replication(v));
        let target = naming::parse_target(params).map_err(|e| ClientError::new("28000", e))?;
        match target {
            Some(target) => {
                security::authorize(self.claims.as_ref(), target.tenant)?;
                let timeline = self.resolve(target.tenant, target.timeline).await?;
                self.target = Some((target, timeline));
            }
            None if self.replication => {
                return Err(ClientError::new(
                    "28000",
                    "replication connections must name a timeline: connect with \
                     options='-c sediment.tenant=<id> -c sediment.timeline=<id> [-c sediment.lsn=<X/Y>]'",
                ))
            }
            None => {}
        }
        Ok(())
    }

    pub async fn resolve(
        &self,
        tenant: storage::TenantId,
        timeline: storage::TimelineId,
    ) -> Result<Arc<Timeline>, ClientError> {
        let resolver = self.shared.resolver.clone();
        tokio::task::spawn_blocking(move || resolver.resolve(tenant, timeline))
            .await
            .map_err(|e| ClientError::new("XX000", format!("resolver failed: {e}")))?
            .map_err(|e| ClientError::new(e.sqlstate(), e.to_string()))
    }

    fn greet(&mut self, params: &proto::StartupParams) {
        self.out.auth_ok();
        let version = self.shared.config.server_version.clone();
        let application = params.get("application_name").cloned().unwrap_or_default();
        for (name, value) in [
            ("server_version", version.as_str()),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("application_name", application.as_str()),
        ] {
            self.out.parameter_status(name, value);
        }
        self.out.backend_key_data(std::process::id(), 0);
        self.out.ready_for_query();
    }

    /// Runs one query, queueing its response (or an ErrorResponse).
    async fn query(&mut self, text: &str) -> Result<Outcome, ProtocolError> {
        let result = match command::parse(text) {
            Err(e) => Err(e.into()),
            Ok(command) => self.dispatch(command).await,
        };
        match result {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                self.out.error("ERROR", error.code, &error.message);
                Ok(Outcome::Done)
            }
        }
    }

    async fn dispatch(&mut self, command: Command) -> Result<Outcome, ClientError> {
        let needs_replication = |name: &str| {
            ClientError::new(
                "42601",
                format!("{name} requires a replication connection (replication=true)"),
            )
        };
        match command {
            Command::Empty => {
                self.out.empty_query();
                Ok(Outcome::Done)
            }
            Command::Show(name) => self.show(&name),
            Command::IdentifySystem if self.replication => self.identify_system().await,
            Command::IdentifySystem => Err(needs_replication("IDENTIFY_SYSTEM")),
            Command::BaseBackup(options) if self.replication => {
                let (target, timeline) = self.session_target()?;
                send_base_backup(self, timeline, target.lsn, options).await
            }
            Command::BaseBackup(_) => Err(needs_replication("BASE_BACKUP")),
            Command::PagestreamGet(request) => self.get_page(request).await,
            Command::PagestreamV2(named) => self.pagestream(named).await,
        }
    }

    fn session_target(&self) -> Result<(SessionTarget, Arc<Timeline>), ClientError> {
        self.target
            .clone()
            .ok_or_else(|| ClientError::new("28000", "no timeline named at connect time"))
    }

    fn show(&mut self, name: &str) -> Result<Outcome, ClientError> {
        let value = match name {
            "wal_segment_size" => "16MB".to_owned(),
            "data_directory_mode" => "0700".to_owned(),
            "server_version" => self.shared.config.server_version.clone(),
            "server_encoding" | "client_encoding" => "UTF8".to_owned(),
            "integer_datetimes" => "on".to_owned(),
            _ => {
                return Err(ClientError::new(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                ))
            }
        };
        self.out.row_description(&[(name, TEXT_OID, -1)]);
        self.out.data_row(&[Some(&value)]);
        self.out.command_complete("SHOW");
        Ok(Outcome::Done)
    }

    async fn identify_system(&mut self) -> Result<Outcome, ClientError> {
        let (target, timeline) = self.session_target()?;
        if let Some(lsn) = target.lsn {
            crate::backup::wait_for_lsn(self, &timeline, lsn).await?;
        }
        let lsn = target.lsn.unwrap_or_else(|| timeline.last_record_lsn());
        let control = read_blocking(timeline, Key::control_file(), lsn).await?;
        let control = ControlFile::parse(&control)
            .map_err(|e| ClientError::new("XX000", format!("stored pg_control: {e}")))?;
        let sysid = control.system_identifier.to_string();
        let tli = control.checkpoint_copy.this_timeline_id.to_string();
        self.out.row_description(&[
            ("systemid", TEXT_OID, -1),
            ("timeline", INT4_OID, 4),
            ("xlogpos", TEXT_OID, -1),
            ("dbname", TEXT_OID, -1),
        ]);
        let lsn_text = lsn.to_string();
        self.out
            .data_row(&[Some(&sysid), Some(&tli), Some(&lsn_text), None]);
        self.out.command_complete("IDENTIFY_SYSTEM");
        Ok(Outcome::Done)
    }

    async fn pagestream(
        &mut self,
        named: Option<(storage::TenantId, storage::TimelineId)>,
    ) -> Result<Outcome, ClientError> {
        let timeline = match named {
            Some((tenant, timeline)) => {
                // The token must reach the tenant the stream names (the
                // session's target was checked when it was set).
                security::authorize(self.claims.as_ref(), tenant)?;
                self.resolve(tenant, timeline).await?
            }
            None => self.session_target()?.1,
        };
        let wait = self.shared.config.wait_lsn_timeout;
        let corruption = self.shared.config.corruption.clone();
        match crate::stream::serve_stream(&mut self.stream, timeline, wait, corruption).await {
            Ok(true) => {
                self.out.copy_done();
                self.out.command_complete("PAGESTREAM_V2");
                Ok(Outcome::Done)
            }
            Ok(false) => Ok(Outcome::Close),
            Err(error) => {
                tracing::debug!(%error, "pagestream ended");
                Ok(Outcome::Close)
            }
        }
    }

    async fn get_page(&mut self, request: PageRequest) -> Result<Outcome, ClientError> {
        security::authorize(self.claims.as_ref(), request.tenant)?;
        let timeline = self.resolve(request.tenant, request.timeline).await?;
        let key = Key::rel_block(request.rel, request.fork, request.blkno);
        let lsn = request.lsn;
        let page = read_blocking(timeline, key, lsn)
            .await
            .map_err(|mut error| {
                if error.code == crate::corruption::DATA_CORRUPTED {
                    error.message = format!("reading key {key} at LSN {lsn}: {}", error.message);
                }
                error
            })
            .inspect_err(|error| {
                if error.code == crate::corruption::DATA_CORRUPTED {
                    self.shared
                        .config
                        .corruption
                        .record(request.timeline, &error.message);
                }
            })?;
        let text = format!("\\x{}", hex::encode(&page));
        self.out.row_description(&[("page", BYTEA_OID, -1)]);
        self.out.data_row(&[Some(&text)]);
        self.out.command_complete("SELECT 1");
        Ok(Outcome::Done)
    }
}

/// `timeline.get` on a blocking thread.
async fn read_blocking(
    timeline: Arc<Timeline>,
    key: Key,
    lsn: Lsn,
) -> Result<bytes::Bytes, ClientError> {
    tokio::task::spawn_blocking(move || timeline.get(key, lsn))
        .await
        .map_err(|e| ClientError::new("XX000", format!("read task failed: {e}")))?
        .map_err(|e| ClientError::from_get(&e))
}
