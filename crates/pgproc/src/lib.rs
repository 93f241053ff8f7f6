//! Running stock PostgreSQL programs (`initdb`, `pg_ctl`, `postgres`,
//! `psql` over the Unix socket, ...) as the right OS user: the one place
//! every Sediment component (datadir's bootstrap, the `sediment` CLI,
//! qluster, testkit, benches) gets that from.
//!
//! Postgres refuses to run as root. When we are root, its programs run as
//! an unprivileged OS user: `SEDIMENT_PG_OS_USER`, or `postgres` (Debian's
//! package user) when that is unset — the one setting. When we are not
//! root they run as ourselves.
//!
//! Privileges are dropped with std's `Command::uid`/`gid` (which also
//! clears supplementary groups when root), so there is no `unsafe`
//! `pre_exec` and no `runuser`/PAM round trip per program. `HOME`, `USER`
//! and `LOGNAME` are set to the user's, since libpq and the server look at
//! them. A `tokio::process::Command` is made with
//! `tokio::process::Command::from(std_command)`.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the OS user Postgres runs as when we are root.
pub const OS_USER_ENV: &str = "SEDIMENT_PG_OS_USER";
/// The OS user when [`OS_USER_ENV`] is unset: Debian's `postgres`.
pub const DEFAULT_OS_USER: &str = "postgres";

/// Why the OS user for Postgres cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such user in the password database.
    #[error("OS user {name:?} (to run PostgreSQL as, since we are root) not found; create it or set {OS_USER_ENV}")]
    UserNotFound {
        /// The name looked up.
        name: String,
    },
    /// The password database could not be read.
    #[error("cannot look up OS user {name:?}: {source}")]
    Lookup {
        /// The name or id looked up.
        name: String,
        /// What failed.
        #[source]
        source: nix::Error,
    },
    /// Changing a path's owner failed.
    #[error("cannot give {} to OS user {user:?}: {source}", path.display())]
    Chown {
        /// The path.
        path: PathBuf,
        /// The user it was to be given to.
        user: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// An OS user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

impl OsUser {
    /// Looks `name` up in the password database.
    pub fn by_name(name: &str) -> Result<OsUser, Error> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|source| Error::Lookup {
                name: name.to_owned(),
                source,
            })?
            .ok_or_else(|| Error::UserNotFound {
                name: name.to_owned(),
            })?;
        Ok(OsUser::from(user))
    }

    /// The account we run as (effective uid).
    pub fn current() -> Result<OsUser, Error> {
        let uid = nix::unistd::Uid::effective();
        let user = nix::unistd::User::from_uid(uid)
            .map_err(|source| Error::Lookup {
                name: uid.to_string(),
                source,
            })?
            .ok_or_else(|| Error::UserNotFound {
                name: uid.to_string(),
            })?;
        Ok(OsUser::from(user))
    }
}

impl From<nix::unistd::User> for OsUser {
    fn from(user: nix::unistd::User) -> OsUser {
        OsUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        }
    }
}

/// The name of the OS user Postgres runs as when we are root:
/// `SEDIMENT_PG_OS_USER`, else `postgres`.
pub fn configured_user_name() -> String {
    match std::env::var(OS_USER_ENV) {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => DEFAULT_OS_USER.to_owned(),
    }
}

/// Whether we run as root (and so must switch users for Postgres).
pub fn running_as_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// How Postgres programs are run: as the configured unprivileged user when
/// we are root, as ourselves otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// `Some` when programs switch to this user; `None`: run as ourselves.
    switch_to: Option<OsUser>,
}

impl RunAs {
    /// From the environment: root runs Postgres as [`configured_user_name`],
    /// anyone else as themselves.
    pub fn detect() -> Result<RunAs, Error> {
        if !running_as_root() {
            return Ok(RunAs::current_user());
        }
        RunAs::named(&configured_user_name())
    }

    /// Runs Postgres as OS user `name` when we are root (an explicit
    /// override of [`OS_USER_ENV`]), as ourselves otherwise.
    pub fn named(name: &str) -> Result<RunAs, Error> {
        if !running_as_root() {
            return Ok(RunAs::current_user());
        }
        Ok(RunAs {
            switch_to: Some(OsUser::by_name(name)?),
        })
    }

    /// Runs every program as ourselves, whoever we are.
    pub fn current_user() -> RunAs {
        RunAs { switch_to: None }
    }

    /// The user programs switch to, or `None` when they run as ourselves.
    pub fn switch_to(&self) -> Option<&OsUser> {
        self.switch_to.as_ref()
    }

    /// (uid, gid) the Postgres programs run with.
    pub fn ids(&self) -> (u32, u32) {
        match &self.switch_to {
            Some(user) => (user.uid, user.gid),
            None => (
                nix::unistd::Uid::effective().as_raw(),
                nix::unistd::Gid::effective().as_raw(),
            ),
        }
    }

    /// Login name of the OS user the programs run as (what `peer`
    /// authentication on the Unix socket sees).
    pub fn user_name(&self) -> Result<String, Error> {
        match &self.switch_to {
            Some(user) => Ok(user.name.clone()),
            None => Ok(OsUser::current()?.name),
        }
    }

    /// A command for `program`, set to run as the Postgres OS user.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        self.apply(&mut command);
        command
    }

    /// Sets `command` to run as the Postgres OS user (nothing changes when
    /// it runs as ourselves).
    pub fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        if let Some(user) = &self.switch_to {
            command
                .uid(user.uid)
                .gid(user.gid)
                .env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        command
    }

    /// Gives `path` (not recursively) to the Postgres OS user; a no-op when
    /// programs run as ourselves.
    pub fn chown(&self, path: &Path) -> Result<(), Error> {
        let Some(user) = &self.switch_to else {
            return Ok(());
        };
        std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(|source| {
            Error::Chown {
                path: path.to_owned(),
                user: user.name.clone(),
                source,
            }
        })
    }

    /// Gives `path` and everything below it to the Postgres OS user.
    /// Symbolic links are changed themselves, never followed.
    pub fn chown_recursive(&self, path: &Path) -> Result<(), Error> {
        if self.switch_to.is_none() {
            return Ok(());
        }
        self.chown(path)?;
        let io = |source| Error::Chown {
            path: path.to_owned(),
            user: self
                .switch_to
                .as_ref()
                .map(|u| u.name.clone())
                .unwrap_or_default(),
            source,
        };
        let metadata = std::fs::symlink_metadata(path).map_err(io)?;
        if metadata.is_dir() {
            for entry in std::fs::read_dir(path).map_err(io)? {
                self.chown_recursive(&entry.map_err(io)?.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_run_as_the_unprivileged_user_when_root() {
        let run_as = RunAs::detect().unwrap();
        let output = run_as.command("id").arg("-u").output().unwrap();
        assert!(output.status.success());
        let uid: u32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        assert_eq!(uid, run_as.ids().0);
        if running_as_root() {
            assert_ne!(uid, 0, "a Postgres program would run as root");
            let user = run_as.switch_to().unwrap();
            assert_eq!(user.name, configured_user_name());
            // No supplementary group of root's survives the switch.
            let groups = run_as.command("id").arg("-G").output().unwrap();
            let groups = String::from_utf8_lossy(&groups.stdout).into_owned();
            assert!(!groups.split_whitespace().any(|g| g == "0"), "{groups}");
        } else {
            assert!(run_as.switch_to().is_none());
        }
        assert_eq!(
            run_as.user_name().unwrap(),
            String::from_utf8_lossy(&run_as.command("id").arg("-un").output().unwrap().stdout)
                .trim()
        );
    }

    #[test]
    fn chown_recursive_gives_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("a/link")).unwrap();
        let run_as = RunAs::detect().unwrap();
        run_as.chown_recursive(dir.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let (uid, _) = run_as.ids();
        for path in ["", "a", "a/f"] {
            assert_eq!(std::fs::metadata(dir.path().join(path)).unwrap().uid(), uid);
        }
        // The link's target is untouched.
        assert_eq!(std::fs::metadata("/etc/passwd").unwrap().uid(), 0);
    }

    #[test]
    fn unknown_user_is_a_typed_error() {
        if running_as_root() {
            let error = RunAs::named("no-such-user-sediment").unwrap_err();
            assert!(matches!(error, Error::UserNotFound { .. }), "{error}");
            assert!(error.to_string().contains(OS_USER_ENV));
        } else {
            assert!(RunAs::named("no-such-user-sediment")
                .unwrap()
                .switch_to()
                .is_none());
        }
    }
}
