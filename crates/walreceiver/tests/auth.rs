//! Password authentication against a real PostgreSQL 15: MD5 and
//! SCRAM-SHA-256 over TCP, and clear errors for wrong or missing passwords.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::runtime;
use testkit::PgCluster;
use walreceiver::{probe, ReceiverError};

/// A cluster with one MD5 and one SCRAM replication role, each only allowed
/// in with its password over TCP.
fn cluster_with_password_roles() -> PgCluster {
    let cluster = PgCluster::builder().start().unwrap();
    cluster
        .psql(
            "SET password_encryption = 'md5';
             CREATE ROLE md5_user LOGIN REPLICATION PASSWORD 'md5 secret';
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE scram_user LOGIN REPLICATION PASSWORD 'scram secret';",
        )
        .unwrap();
    let hba = cluster.data_dir().join("pg_hba.conf");
    let existing = std::fs::read_to_string(&hba).unwrap();
    let rules = "host replication md5_user 127.0.0.1/32 md5\n\
                 host replication scram_user 127.0.0.1/32 scram-sha-256\n";
    std::fs::write(&hba, format!("{rules}{existing}")).unwrap();
    cluster.psql("SELECT pg_reload_conf()").unwrap();
    cluster
}

#[test]
fn md5_and_scram_passwords_work_and_wrong_ones_are_refused_clearly() {
    let cluster = cluster_with_password_roles();
    let runtime = runtime();
    let base = format!("host=127.0.0.1 port={}", cluster.port());
    for (user, password) in [("md5_user", "md5 secret"), ("scram_user", "scram secret")] {
        let connstr = format!("{base} user={user} password='{password}'");
        let info = runtime.block_on(probe(&connstr, None)).unwrap();
        assert!(info.system_id != 0, "{user}");

        let url = format!(
            "postgresql://{user}:{}@127.0.0.1:{}/postgres",
            password.replace(' ', "%20"),
            cluster.port()
        );
        runtime.block_on(probe(&url, None)).unwrap();

        let wrong = format!("{base} user={user} password=nope");
        let error = runtime.block_on(probe(&wrong, None)).unwrap_err();
        assert!(
            matches!(error, ReceiverError::Authentication { .. }),
            "{user}: {error}"
        );
        assert!(
            error.to_string().contains("password authentication failed"),
            "{error}"
        );

        let missing = format!("{base} user={user}");
        let error = runtime.block_on(probe(&missing, None)).unwrap_err();
        assert!(error.to_string().contains("has none"), "{user}: {error}");
    }
}
