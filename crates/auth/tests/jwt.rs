//! Token validation end to end: generated Ed25519 keys and a fixed RSA test
//! key, scopes, expiry, foreign signatures, and key rotation by reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use auth::keys::{generate_ed25519, sign};
use auth::{AuthError, Claims, JwtAuth, Scope};

const TENANT: &str = "0123456789abcdef0123456789abcdef";
const OTHER: &str = "fedcba9876543210fedcba9876543210";

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn ed25519_tokens_validate_and_scopes_confine() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_ed25519().unwrap();
    std::fs::write(dir.path().join("key.pem"), &pair.public_pem).unwrap();
    let auth = JwtAuth::load(dir.path()).unwrap();
    let private = pair.private_pem.as_bytes();

    let admin = sign(private, Path::new("k"), &Claims::pageserver_api()).unwrap();
    let claims = auth
        .decode_bearer(Some(&format!("Bearer {admin}")))
        .unwrap();
    assert_eq!(claims.scope, Scope::PageServerApi);
    claims.check_tenant(None).unwrap();
    claims.check_tenant(Some(TENANT)).unwrap();

    let tenant = sign(private, Path::new("k"), &Claims::tenant(TENANT)).unwrap();
    let claims = auth.decode(&tenant).unwrap();
    claims.check_tenant(Some(TENANT)).unwrap();
    assert!(claims.check_tenant(Some(OTHER)).unwrap_err().is_forbidden());
    assert!(claims.check_tenant(None).unwrap_err().is_forbidden());

    assert!(matches!(auth.decode_bearer(None), Err(AuthError::Missing)));
    assert!(matches!(
        auth.decode_bearer(Some(&format!("Basic {admin}"))),
        Err(AuthError::Invalid(_))
    ));
    assert!(matches!(
        auth.decode("not.a.jwt"),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn foreign_signatures_and_expired_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = generate_ed25519().unwrap();
    let stranger = generate_ed25519().unwrap();
    std::fs::write(dir.path().join("key.pem"), &trusted.public_pem).unwrap();
    let auth = JwtAuth::load(dir.path()).unwrap();

    let forged = sign(
        stranger.private_pem.as_bytes(),
        Path::new("s"),
        &Claims::pageserver_api(),
    )
    .unwrap();
    let error = auth.decode(&forged).unwrap_err();
    assert!(matches!(error, AuthError::Invalid(_)), "{error}");
    assert!(!error.is_forbidden());

    let mut claims = Claims::pageserver_api();
    claims.exp = Some(now() - 60);
    let expired = sign(trusted.private_pem.as_bytes(), Path::new("t"), &claims).unwrap();
    assert!(matches!(auth.decode(&expired), Err(AuthError::Expired)));

    claims.exp = Some(now() + 3600);
    let fresh = sign(trusted.private_pem.as_bytes(), Path::new("t"), &claims).unwrap();
    assert_eq!(auth.decode(&fresh).unwrap().exp, claims.exp);
}

#[test]
fn rs256_keys_work_beside_ed25519() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_ed25519().unwrap();
    std::fs::write(dir.path().join("ed.pem"), &pair.public_pem).unwrap();
    std::fs::copy(data("rsa_public.pem"), dir.path().join("rsa.pem")).unwrap();
    let auth = JwtAuth::load(dir.path()).unwrap();
    let rsa_private = std::fs::read(data("rsa_private.pem")).unwrap();
    let token = sign(&rsa_private, Path::new("rsa"), &Claims::tenant(TENANT)).unwrap();
    let header = token.split('.').next().unwrap().to_owned();
    assert!(!header.is_empty());
    assert_eq!(
        auth.decode(&token).unwrap().tenant_id.as_deref(),
        Some(TENANT)
    );
    // A single file works as the configured path too.
    let single = JwtAuth::load(&dir.path().join("rsa.pem")).unwrap();
    single.decode(&token).unwrap();
    assert!(single
        .decode(
            &sign(
                pair.private_pem.as_bytes(),
                Path::new("e"),
                &Claims::pageserver_api()
            )
            .unwrap()
        )
        .is_err());
}

#[test]
fn reload_rotates_keys_and_keeps_old_set_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let old = generate_ed25519().unwrap();
    let new = generate_ed25519().unwrap();
    std::fs::write(dir.path().join("old.pem"), &old.public_pem).unwrap();
    let auth = JwtAuth::load(dir.path()).unwrap();
    let old_token = sign(
        old.private_pem.as_bytes(),
        Path::new("o"),
        &Claims::pageserver_api(),
    )
    .unwrap();
    let new_token = sign(
        new.private_pem.as_bytes(),
        Path::new("n"),
        &Claims::pageserver_api(),
    )
    .unwrap();
    auth.decode(&old_token).unwrap();
    assert!(auth.decode(&new_token).is_err());

    std::fs::remove_file(dir.path().join("old.pem")).unwrap();
    std::fs::write(dir.path().join("new.pem"), &new.public_pem).unwrap();
    assert_eq!(auth.reload().unwrap(), 1);
    auth.decode(&new_token).unwrap();
    assert!(auth.decode(&old_token).is_err());

    std::fs::remove_file(dir.path().join("new.pem")).unwrap();
    assert!(matches!(auth.reload(), Err(AuthError::NoKeys(_))));
    auth.decode(&new_token).unwrap();
}

#[test]
fn bad_key_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a key").unwrap();
    let error = JwtAuth::load(dir.path()).unwrap_err();
    assert!(error.to_string().contains("junk.pem"), "{error}");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        JwtAuth::load(empty.path()),
        Err(AuthError::NoKeys(_))
    ));
}

#[test]
fn tls_configs_build_from_generated_certs() {
    let dir = tempfile::tempdir().unwrap();
    let certs =
        auth::tls::generate_ca_and_server_cert(&["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (ca, cert, key) = certs.write_to(dir.path()).unwrap();
    auth::tls::server_config(&cert, &key).unwrap();
    auth::tls::client_config(&ca).unwrap();
    let error = auth::tls::server_config(&cert, &dir.path().join("missing.key")).unwrap_err();
    assert!(error.to_string().contains("missing.key"), "{error}");
}
