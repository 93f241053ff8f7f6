//! Lazy endpoints: the data directory holds everything but relation
//! contents, relation segments are sparse files, and the fill process (the
//! `lazyfill` crate, run as `sediment lazyfill run <config>`) writes each
//! page from the page service the moment before Postgres first touches it.
//! The fill process starts Postgres through its guard and the two live and
//! die together (see the `lazyfill` crate docs); `endpoint stop` stops
//! Postgres as usual and the fill process follows.
//!
//! Files in the endpoint directory: `fill-config.json` (what the fill
//! process serves), `fill.json` (its progress), `lazyfill.log`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lazyfill::supervise::{FillConfig, FillStatus, SegmentConfig};
use page_service::client::{PageClient, Security};
use postgres_wal::Lsn;

use super::pg;
use super::EndpointState;
use crate::workdir::Workdir;

const CONFIG_FILE: &str = "fill-config.json";
const STATUS_FILE: &str = "fill.json";
const LOG_FILE: &str = "lazyfill.log";
/// How long a lazy start may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// `sediment lazyfill ...`: the fill process and its guard.
pub fn fill_process_main(args: &[String]) -> ExitCode {
    lazyfill::init_logging();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "sediment".to_owned());
    let guard = [exe, "lazyfill".to_owned(), "guard".to_owned()];
    match lazyfill::supervise::main_with_args(args, &guard) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("sediment lazyfill: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether this machine can run lazy endpoints (fanotify pre-content
/// events need kernel ≥ 6.14 and CAP_SYS_ADMIN); the reason if not.
pub fn unavailable_reason() -> Option<String> {
    lazyfill::fanotify::Group::new()
        .err()
        .map(|e| e.to_string())
}

/// Writes the lazy data directory into `state.pgdata` and the fill
/// process's config; returns the LSN pages are read at.
pub fn provision(workdir: &Workdir, state: &EndpointState, dir: &Path) -> anyhow::Result<Lsn> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let addr = workdir.config.pageserver.pg_addr.clone();
    let lsn = match state.lsn.as_str() {
        "" => None,
        text => Some(text.parse::<Lsn>().context("endpoint LSN")?),
    };
    let ca_file = crate::security::ca_file(workdir);
    let token = crate::security::own_token(
        workdir,
        auth::Claims::tenant(state.tenant_id.clone()),
        crate::security::OWN_TOKEN_LIFETIME,
    )?;
    let security = Security::new(ca_file.as_deref(), token.clone())?;
    let backup = runtime.block_on(async {
        let client = PageClient::connect_secured(
            &addr,
            state.tenant_id.parse().context("tenant id")?,
            state.timeline_id.parse().context("timeline id")?,
            &security,
        )
        .await
        .with_context(|| format!("connecting to the page service at {addr}"))?;
        anyhow::Ok(client.lazy_basebackup(lsn).await?)
    })?;
    std::fs::create_dir_all(&state.pgdata)?;
    datadir::lazy::write_lazy_datadir(
        &state.pgdata,
        &backup.tar[..],
        backup.segments.iter().map(|s| datadir::lazy::SparseFile {
            path: &s.path,
            size_bytes: u64::from(s.blocks) * 8192,
        }),
    )?;
    let (uid, gid) = pg::PgUser::new()?.ids();
    let config = FillConfig {
        pageserver: addr,
        ca_file,
        token,
        tenant: state.tenant_id.clone(),
        timeline: state.timeline_id.clone(),
        lsn: backup.lsn.to_string(),
        pgdata: state.pgdata.clone(),
        segments: backup
            .segments
            .iter()
            .map(|s| SegmentConfig {
                path: s.path.clone(),
                spc: s.tag.rel.spc_node,
                db: s.tag.rel.db_node,
                rel: s.tag.rel.rel_node,
                fork: s.tag.fork as u8,
                first_blkno: s.first_blkno,
                blocks: s.blocks,
            })
            .collect(),
        status_file: dir.join(STATUS_FILE),
        postgres: vec![
            workdir
                .config
                .pg_bin_dir
                .join("postgres")
                .display()
                .to_string(),
            "-D".to_owned(),
            state.pgdata.display().to_string(),
        ],
        postgres_uid: uid,
        postgres_gid: gid,
        postgres_log: dir.join("postgres.log"),
        background_fill: true,
    };
    write_private_config(&dir.join(CONFIG_FILE), &serde_json::to_vec_pretty(&config)?)?;
    Ok(backup.lsn)
}

/// Writes the fill config, which may hold a token, readable by its owner
/// only (created 0600, then renamed into place).
fn write_private_config(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Starts the fill process (which starts Postgres) detached from this CLI,
/// and waits until Postgres accepts connections.
pub fn start(state: &EndpointState, dir: &Path) -> anyhow::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG_FILE))?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("lazyfill")
        .arg("run")
        .arg(dir.join(CONFIG_FILE))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a ^C at this terminal must not reach it.
        .process_group(0)
        .spawn()
        .context("cannot start the fill process")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        // What `pg_ctl -w` waits for: our postmaster's status line says
        // `ready` (it then accepts connections). No trial query: no
        // password is set yet, and each psql costs ~20 ms of start.
        if postmaster_ready(&state.pgdata) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the fill process exited ({status}) before Postgres accepted connections; see {} ({})",
                dir.join(LOG_FILE).display(),
                super::pg::log_tail(&dir.join("postgres.log"))
            );
        }
        if Instant::now() > deadline {
            bail!(
                "Postgres did not accept connections within {START_TIMEOUT:?}; see {}",
                dir.join("postgres.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `postmaster.pid` names a live process whose status line says `ready`.
fn postmaster_ready(pgdata: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.get(7).is_some_and(|l| l.trim() == "ready") && pg::is_running(pgdata)
}

/// Waits (bounded) until the fill process of the endpoint in `dir` has
/// exited, after its Postgres stopped, so its directory can be reused.
pub fn wait_fill_process_exit(dir: &Path) {
    let Some(pid) = progress(dir).map(|p| p.filler_pid) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while pid.as_raw() > 1 && nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline
    {
        // When this process started the filler (`table restore` runs a
        // temporary endpoint), an exited filler is our zombie and would
        // still answer kill(0): reap it. For anyone else's child this is
        // ECHILD, ignored.
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fill process's last progress report, if any.
pub fn progress(dir: &Path) -> Option<FillStatus> {
    serde_json::from_slice(&std::fs::read(dir.join(STATUS_FILE)).ok()?).ok()
}
