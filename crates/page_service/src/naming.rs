//! How a client names the tenant, timeline and LSN it wants, using only
//! what an unmodified PostgreSQL client can send: the `options` startup
//! parameter, read the way a PostgreSQL backend reads it.
//!
//! ```text
//! options='-c sediment.tenant=<32 hex> -c sediment.timeline=<32 hex> -c sediment.lsn=<X/Y>'
//! ```
//!
//! `-cname=value` and `--name=value` are accepted too, and words are split
//! on whitespace with `\` escaping the next character, as in PostgreSQL.
//! Other settings are ignored. `sediment.lsn` is optional (default: the
//! timeline's last record LSN when the command runs).

use postgres_wal::Lsn;
use storage::{TenantId, TimelineId};

use crate::proto::StartupParams;

/// The `-c` setting naming the tenant.
pub const TENANT_SETTING: &str = "sediment.tenant";
/// The `-c` setting naming the timeline.
pub const TIMELINE_SETTING: &str = "sediment.timeline";
/// The `-c` setting naming the LSN of a base backup.
pub const LSN_SETTING: &str = "sediment.lsn";

/// What a connection named at startup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTarget {
    pub tenant: TenantId,
    pub timeline: TimelineId,
    pub lsn: Option<Lsn>,
}

/// Whether a `replication` startup value asks for a (physical) replication
/// connection, as libpq sends it (`true`, `on`, `yes`, `1`; `database` is
/// logical replication, which we treat the same since we only serve
/// `BASE_BACKUP`).
pub fn is_replication(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "on" | "yes" | "1" | "database"
    )
}

/// Reads the target from the startup parameters: `None` if the client named
/// nothing, an error if it named something incomplete or malformed.
pub fn parse_target(params: &StartupParams) -> Result<Option<SessionTarget>, String> {
    let settings = params
        .get("options")
        .map(|o| settings_from_options(o))
        .unwrap_or_default();
    let find = |name: &str| {
        settings
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let (tenant, timeline, lsn) = (
        find(TENANT_SETTING),
        find(TIMELINE_SETTING),
        find(LSN_SETTING),
    );
    let (tenant, timeline) = match (tenant, timeline) {
        (None, None) if lsn.is_none() => return Ok(None),
        (Some(tenant), Some(timeline)) => (tenant, timeline),
        _ => {
            return Err(format!(
                "both {TENANT_SETTING} and {TIMELINE_SETTING} must be set in the options \
                 startup parameter"
            ))
        }
    };
    Ok(Some(SessionTarget {
        tenant: tenant
            .parse()
            .map_err(|e| format!("{TENANT_SETTING}: {e}"))?,
        timeline: timeline
            .parse()
            .map_err(|e| format!("{TIMELINE_SETTING}: {e}"))?,
        lsn: lsn
            .map(|l| l.parse().map_err(|e| format!("{LSN_SETTING}: {e}")))
            .transpose()?,
    }))
}

/// The `name=value` settings of an `options` string.
fn settings_from_options(options: &str) -> Vec<(String, String)> {
    let words = split_words(options);
    let mut settings = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let setting = if word == "-c" {
            i += 1;
            words.get(i).map(String::as_str)
        } else {
            word.strip_prefix("--").or_else(|| word.strip_prefix("-c"))
        };
        if let Some((name, value)) = setting.and_then(|s| s.split_once('=')) {
            // PostgreSQL treats '-' and '_' in setting names alike.
            settings.push((name.replace('-', "_"), value.to_owned()));
        }
        i += 1;
    }
    settings
}

/// Splits on whitespace; a backslash takes the next character literally.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(options: &str) -> StartupParams {
        StartupParams::from([("options".to_owned(), options.to_owned())])
    }

    #[test]
    fn reads_all_three_spellings() {
        let tenant = TenantId::generate();
        let timeline = TimelineId::generate();
        for options in [
            format!("-c sediment.tenant={tenant} -c sediment.timeline={timeline} -c sediment.lsn=0/16B9188"),
            format!("-csediment.tenant={tenant}  -csediment.timeline={timeline} --sediment.lsn=0/16B9188"),
        ] {
            let target = parse_target(&params(&options)).unwrap().unwrap();
            assert_eq!(target.tenant, tenant);
            assert_eq!(target.timeline, timeline);
            assert_eq!(target.lsn, Some(Lsn(0x16B9188)));
        }
        let target = parse_target(&params(&format!(
            "-c sediment.tenant={tenant} -c work_mem=1MB -c sediment.timeline={timeline}"
        )))
        .unwrap()
        .unwrap();
        assert_eq!(target.lsn, None);
    }

    #[test]
    fn nothing_named_is_none_and_partial_is_an_error() {
        assert_eq!(parse_target(&StartupParams::new()).unwrap(), None);
        assert_eq!(parse_target(&params("-c work_mem=1MB")).unwrap(), None);
        assert!(parse_target(&params("-c sediment.tenant=00")).is_err());
        let t = TenantId::generate();
        assert!(parse_target(&params(&format!(
            "-c sediment.tenant={t} -c sediment.timeline=xyz"
        )))
        .is_err());
        assert!(parse_target(&params(&format!(
            "-c sediment.tenant={t} -c sediment.timeline={t} -c sediment.lsn=nope"
        )))
        .is_err());
        assert!(parse_target(&params("-c sediment.lsn=0/1")).is_err());
    }

    #[test]
    fn words_split_like_postgres() {
        assert_eq!(split_words(r"a\ b  c\\"), vec!["a b", "c\\"]);
        assert!(is_replication("true") && is_replication("ON") && !is_replication("false"));
    }
}
