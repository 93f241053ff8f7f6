//! `sediment console`: the URL of the pageserver's web console.
//!
//! The console is served by the pageserver itself (`/console`); its data
//! calls need a token when auth is on, so the URL then carries one
//! (`?token=`), which the page moves into the browser's sessionStorage and
//! out of the address bar. With a default tenant the URL opens its page.

use std::time::Duration;

use serde_json::json;

use crate::output::Output;
use crate::workdir::Workdir;

/// How long the token in a console URL stays valid: a working day.
const CONSOLE_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// `sediment console`.
pub fn run(workdir: &Workdir, out: &Output) -> anyhow::Result<()> {
    let mut url = format!("{}/console", workdir.api_base());
    // A read-everything (`pageserverapi`) token; `None` when auth is off.
    if let Some(token) = crate::security::own_token(
        workdir,
        auth::Claims::pageserver_api(),
        CONSOLE_TOKEN_LIFETIME,
    )? {
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
