//! Parsing the commands the page service understands, from the text of a
//! simple Query message.
//!
//! Replication connections: `IDENTIFY_SYSTEM`, `SHOW <setting>` and the
//! PostgreSQL 15 form `BASE_BACKUP ( OPTION [value] [, ...] )`.
//! Ordinary connections: `pagestream_get <tenant> <timeline> <spc> <db>
//! <rel> <fork> <blkno> <lsn>`. Anything else is a syntax error, reported
//! to the client; parsing never panics on any input.

use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use storage::{TenantId, TimelineId};

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// An empty query string.
    Empty,
    IdentifySystem,
    /// `SHOW name` (lower-cased).
    Show(String),
    BaseBackup(BaseBackupOptions),
    PagestreamGet(PageRequest),
    /// `pagestream_v2 [<tenant> <timeline>]`: enter the binary page stream
    /// on the named timeline (default: the one named at connect time).
    PagestreamV2(Option<(TenantId, TimelineId)>),
}

/// The `BASE_BACKUP` options that change what we send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaseBackupOptions {
    pub label: Option<String>,
    /// Send progress ('p') messages.
    pub progress: bool,
    /// `MANIFEST 'yes'` or `'force-encode'`.
    pub manifest: bool,
}

/// One page at one LSN, as requested by `pagestream_get`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub tenant: TenantId,
    pub timeline: TimelineId,
    pub rel: RelFileNode,
    pub fork: ForkNumber,
    pub blkno: u32,
    pub lsn: Lsn,
}

/// Why a command was refused; the message goes to the client verbatim.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// SQLSTATE to report.
    pub code: &'static str,
    pub message: String,
}

impl CommandError {
    fn syntax(message: impl Into<String>) -> CommandError {
        CommandError {
            code: "42601",
            message: message.into(),
        }
    }

    fn unsupported(message: impl Into<String>) -> CommandError {
        CommandError {
            code: "0A000",
            message: message.into(),
        }
    }
}

/// Parses the text of a Query message.
pub fn parse(text: &str) -> Result<Command, CommandError> {
    let text = text.trim().trim_end_matches(';').trim_end();
    let (word, rest) = match text.find(|c: char| c.is_whitespace() || c == '(') {
        Some(at) => (&text[..at], text[at..].trim_start()),
        None => (text, ""),
    };
    match word.to_ascii_uppercase().as_str() {
        "" => Ok(Command::Empty),
        "IDENTIFY_SYSTEM" if rest.is_empty() => Ok(Command::IdentifySystem),
        "SHOW" if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
            Ok(Command::Show(rest.trim_matches('"').to_ascii_lowercase()))
        }
        "BASE_BACKUP" => parse_base_backup(rest).map(Command::BaseBackup),
        "PAGESTREAM_GET" => parse_pagestream_get(rest).map(Command::PagestreamGet),
        "PAGESTREAM_V2" => parse_pagestream_v2(rest).map(Command::PagestreamV2),
        _ => Err(CommandError::syntax(format!(
            "unrecognized command {:?}; this server understands IDENTIFY_SYSTEM, SHOW, \
             BASE_BACKUP (replication connections), pagestream_get and pagestream_v2",
            truncate(text, 60)
        ))),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// A token of the `BASE_BACKUP` option list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<Token>, CommandError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => s.push(c),
                        None => return Err(CommandError::syntax("unterminated quoted string")),
                    }
                }
                tokens.push(Token::Str(s));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => {
                return Err(CommandError::syntax(format!(
                    "unexpected character {other:?} in BASE_BACKUP options"
                )))
            }
        }
    }
    Ok(tokens)
}

/// `(NAME [value], ...)` → (upper-cased name, optional value) pairs.
fn option_list(rest: &str) -> Result<Vec<(String, Option<String>)>, CommandError> {
    let tokens = tokenize(rest)?;
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let inner =
        match tokens.as_slice() {
            [Token::Open, inner @ .., Token::Close] => inner,
            _ => return Err(CommandError::syntax(
                "BASE_BACKUP options must be a parenthesised list: BASE_BACKUP (NAME [value], ...)",
            )),
        };
    let mut options = Vec::new();
    for item in inner.split(|t| *t == Token::Comma) {
        match item {
            [Token::Word(name)] => options.push((name.to_ascii_uppercase(), None)),
            [Token::Word(name), Token::Word(v) | Token::Str(v)] => {
                options.push((name.to_ascii_uppercase(), Some(v.clone())))
            }
            _ => return Err(CommandError::syntax("malformed BASE_BACKUP option list")),
        }
    }
    Ok(options)
}

fn boolean(name: &str, value: Option<&str>) -> Result<bool, CommandError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "on" | "yes" | "1") => Ok(true),
        Some("false" | "off" | "no" | "0") => Ok(false),
        Some(other) => Err(CommandError::syntax(format!(
            "{name} requires a Boolean value, got {other:?}"
        ))),
    }
}

fn parse_base_backup(rest: &str) -> Result<BaseBackupOptions, CommandError> {
    let mut options = BaseBackupOptions::default();
    for (name, value) in option_list(rest)? {
        let value = value.as_deref();
        match name.as_str() {
            "LABEL" => options.label = value.map(str::to_owned),
            "PROGRESS" => options.progress = boolean(&name, value)?,
            "MANIFEST" => {
                options.manifest = match value.map(str::to_ascii_lowercase).as_deref() {
                    Some("yes" | "force-encode") => true,
                    Some("no") => false,
                    other => {
                        return Err(CommandError::syntax(format!(
                            "unrecognized manifest option {other:?}"
                        )))
                    }
                }
            }
            "TARGET" if value.is_some_and(|v| v.eq_ignore_ascii_case("client")) => {}
            "TARGET" | "TARGET_DETAIL" => {
                return Err(CommandError::unsupported(
                    "only the client backup target is supported",
                ))
            }
            "COMPRESSION" | "COMPRESSION_DETAIL" => {
                return Err(CommandError::unsupported(
                    "server-side compression is not supported; compress on the client",
                ))
            }
            // Accepted and irrelevant here: there is no checkpoint to wait
            // for, the WAL needed is always in the archive, no tablespace
            // symlinks exist and pages come from the store, not disk.
            "CHECKPOINT" | "WAIT" | "WAL" | "MAX_RATE" | "TABLESPACE_MAP" | "VERIFY_CHECKSUMS"
            | "MANIFEST_CHECKSUMS" => {}
            _ => {
                return Err(CommandError::syntax(format!(
                    "unrecognized base backup option {name:?}"
                )))
            }
        }
    }
    Ok(options)
}

fn parse_pagestream_get(rest: &str) -> Result<PageRequest, CommandError> {
    const USAGE: &str = "usage: pagestream_get <tenant> <timeline> <spcnode> <dbnode> <relnode> \
                         <fork: main|fsm|vm|init|0-3> <blkno> <lsn X/Y>";
    let args: Vec<&str> = rest.split_whitespace().collect();
    let [tenant, timeline, spc, db, rel, fork, blkno, lsn] = args.as_slice() else {
        return Err(CommandError::syntax(USAGE));
    };
    let number = |what: &str, s: &str| {
        s.parse::<u32>()
            .map_err(|_| CommandError::syntax(format!("invalid {what} {s:?}; {USAGE}")))
    };
    Ok(PageRequest {
        tenant: tenant
            .parse()
            .map_err(|e| CommandError::syntax(format!("{e}")))?,
        timeline: timeline
            .parse()
            .map_err(|e| CommandError::syntax(format!("{e}")))?,
        rel: RelFileNode {
            spc_node: number("spcnode", spc)?,
            db_node: number("dbnode", db)?,
            rel_node: number("relnode", rel)?,
        },
        fork: parse_fork(fork)
            .ok_or_else(|| CommandError::syntax(format!("invalid fork {fork:?}")))?,
        blkno: number("blkno", blkno)?,
        lsn: lsn
            .parse()
            .map_err(|e| CommandError::syntax(format!("{e}")))?,
    })
}

fn parse_pagestream_v2(rest: &str) -> Result<Option<(TenantId, TimelineId)>, CommandError> {
    let args: Vec<&str> = rest.split_whitespace().collect();
    match args.as_slice() {
        [] => Ok(None),
        [tenant, timeline] => Ok(Some((
            tenant
                .parse()
                .map_err(|e| CommandError::syntax(format!("{e}")))?,
            timeline
                .parse()
                .map_err(|e| CommandError::syntax(format!("{e}")))?,
        ))),
        _ => Err(CommandError::syntax(
            "usage: pagestream_v2 [<tenant> <timeline>]",
        )),
    }
}

fn parse_fork(s: &str) -> Option<ForkNumber> {
    match s.to_ascii_lowercase().as_str() {
        "0" | "main" => Some(ForkNumber::Main),
        "1" | "fsm" => Some(ForkNumber::Fsm),
        "2" | "vm" => Some(ForkNumber::VisibilityMap),
        "3" | "init" => Some(ForkNumber::Init),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_pg_basebackup_15_sends() {
        let cmd = parse(
            "BASE_BACKUP ( LABEL 'pg_basebackup base backup',  PROGRESS,  CHECKPOINT 'fast',  \
             WAIT 0,  MANIFEST 'yes',  TARGET 'client')",
        )
        .unwrap();
        assert_eq!(
            cmd,
            Command::BaseBackup(BaseBackupOptions {
                label: Some("pg_basebackup base backup".into()),
                progress: true,
                manifest: true,
            })
        );
        assert_eq!(
            parse("BASE_BACKUP").unwrap(),
            Command::BaseBackup(Default::default())
        );
        assert_eq!(parse("identify_system;").unwrap(), Command::IdentifySystem);
        assert_eq!(
            parse("SHOW wal_segment_size").unwrap(),
            Command::Show("wal_segment_size".into())
        );
        assert_eq!(parse("  ").unwrap(), Command::Empty);
    }

    #[test]
    fn label_quotes_are_unescaped() {
        let Command::BaseBackup(o) = parse("BASE_BACKUP (LABEL 'it''s')").unwrap() else {
            panic!()
        };
        assert_eq!(o.label.as_deref(), Some("it's"));
    }

    #[test]
    fn malformed_commands_are_errors() {
        for bad in [
            "BASE_BACKUP (LABEL 'x'",
            "BASE_BACKUP (LABEL 'x)",
            "BASE_BACKUP (BOGUS)",
            "BASE_BACKUP (PROGRESS maybe)",
            "BASE_BACKUP (COMPRESSION 'gzip')",
            "BASE_BACKUP (TARGET 'server')",
            "BASE_BACKUP LABEL 'x'",
            "BASE_BACKUP (,)",
            "BASE_BACKUP (LABEL 'a' 'b')",
            "DROP TABLE x",
            "SHOW",
            "pagestream_get",
            "pagestream_get a b 1 2 3 main 0 0/0",
            "\u{0}\u{ffff}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pagestream_get_arguments() {
        let tenant = TenantId::generate();
        let timeline = TimelineId::generate();
        let cmd = parse(&format!(
            "pagestream_get {tenant} {timeline} 1663 5 1259 vm 7 0/16B9188"
        ))
        .unwrap();
        let Command::PagestreamGet(req) = cmd else {
            panic!()
        };
        assert_eq!(req.tenant, tenant);
        assert_eq!(req.timeline, timeline);
        assert_eq!(req.rel.rel_node, 1259);
        assert_eq!(req.fork, ForkNumber::VisibilityMap);
        assert_eq!(req.blkno, 7);
        assert_eq!(req.lsn, Lsn(0x16B9188));
        let bad_fork = format!("pagestream_get {tenant} {timeline} 1663 5 1259 heap 7 0/1");
        assert!(parse(&bad_fork).is_err());
    }
}
