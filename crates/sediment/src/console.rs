//! `sediment console`: the URL of the pageserver's web console.
//!
//! The console is served by the pageserver itself (`/console`); its data
//! calls need a token when auth is on, so the URL then carries one
//! (`?token=`), which the page moves into the browser's sessionStorage and
//! out of the address bar. With a default tenant the URL opens its page.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::output::Output;
use crate::workdir::Workdir;

/// How long the token in a console URL stays valid: a working day.
const CONSOLE_TOKEN_SECONDS: u64 = 12 * 3600;

/// `sediment console`.
pub fn run(workdir: &Workdir, out: &Output) -> anyhow::Result<()> {
    let mut url = format!("{}/console", workdir.api_base());
    if let Some(token) = console_token(workdir)? {
        // JWTs are base64url and dots: nothing to escape in a query.
        url.push_str("?token=");
        url.push_str(&token);
    }
    if let Some(tenant) = &workdir.config.default_tenant {
        url.push_str("#/tenant/");
        url.push_str(tenant);
    }
    out.print(&url, &json!({ "url": url }));
    Ok(())
}

/// A read-everything (`pageserverapi`) token, or `None` when auth is off.
fn console_token(workdir: &Workdir) -> anyhow::Result<Option<String>> {
    let Some(key) = workdir
        .config
        .security
        .as_ref()
        .and_then(|s| s.private_key.as_ref())
    else {
        return Ok(None);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = auth::Claims {
        exp: Some(now + CONSOLE_TOKEN_SECONDS),
        ..auth::Claims::pageserver_api()
    };
    Ok(Some(auth::keys::sign_with_file(
        &workdir.path.join(key),
        &claims,
    )?))
}
