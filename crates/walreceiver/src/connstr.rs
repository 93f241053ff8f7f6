//! Connection strings: libpq's `key=value` form (`host=127.0.0.1 port=5432
//! user=postgres`) and `postgresql://user:password@host:port/dbname?key=value`
//! URLs. Only what a replication connection needs is kept; TLS is not
//! supported, so `sslmode` values that demand it are refused up front rather
//! than silently connecting in the clear.

use std::time::Duration;

use crate::error::ReceiverError;

/// libpq's default socket directory on Debian, used when no host is given.
const DEFAULT_HOST: &str = "/var/run/postgresql";
const DEFAULT_PORT: u16 = 5432;
const DEFAULT_USER: &str = "postgres";

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Host name or IP address, or a directory holding the Unix socket.
    pub host: String,
    /// TCP port, or the number in the socket's file name.
    pub port: u16,
    /// Database role.
    pub user: String,
    /// Password for cleartext, MD5 or SCRAM authentication.
    pub password: Option<String>,
    /// `application_name` from the string, if any.
    pub application_name: Option<String>,
    /// `connect_timeout` from the string, if any.
    pub connect_timeout: Option<Duration>,
}

impl ConnectionConfig {
    /// Parses either form of connection string.
    pub fn parse(connstr: &str) -> Result<ConnectionConfig, ReceiverError> {
        let trimmed = connstr.trim();
        let pairs = if let Some(rest) = trimmed
            .strip_prefix("postgresql://")
            .or_else(|| trimmed.strip_prefix("postgres://"))
        {
            parse_url(rest)?
        } else {
            parse_key_values(trimmed)?
        };
        let mut config = ConnectionConfig {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            user: DEFAULT_USER.to_owned(),
            password: None,
            application_name: None,
            connect_timeout: None,
        };
        for (key, value) in pairs {
            config.set(&key, value)?;
        }
        Ok(config)
    }

    /// Whether `host` names a socket directory rather than a network host.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// `host:port`, or the socket file path: how errors name the server.
    pub fn address(&self) -> String {
        if self.is_unix_socket() {
            format!("{}/.s.PGSQL.{}", self.host, self.port)
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), ReceiverError> {
        match key {
            "host" => self.host = value,
            "port" => {
                self.port = value
                    .parse()
                    .map_err(|_| invalid(format!("port {value:?} is not a port number")))?
            }
            "user" => self.user = value,
            "password" => self.password = Some(value),
            "application_name" => self.application_name = Some(value),
            "connect_timeout" => {
                let seconds: u64 = value
                    .parse()
                    .map_err(|_| invalid(format!("connect_timeout {value:?} is not a number")))?;
                self.connect_timeout = Some(Duration::from_secs(seconds.max(1)));
            }
            "sslmode" => match value.as_str() {
                "disable" | "allow" | "prefer" => {}
                other => {
                    return Err(invalid(format!(
                        "sslmode={other} needs TLS, which is not supported"
                    )))
                }
            },
            // Accepted and irrelevant for a physical replication connection.
            "dbname" | "options" | "replication" | "fallback_application_name" | "keepalives" => {}
            other => return Err(invalid(format!("unknown keyword {other:?}"))),
        }
        Ok(())
    }
}

fn invalid(reason: String) -> ReceiverError {
    ReceiverError::ConnectionString(reason)
}

/// `key=value` pairs separated by whitespace; values may be single-quoted,
/// with `\'` and `\\` escapes, as libpq allows.
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, ReceiverError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(invalid(format!("missing \"=\" after {key:?}")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(invalid(format!("unterminated quoted value for {key:?}"))),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// The part of a URL after `postgresql://`.
fn parse_url(rest: &str) -> Result<Vec<(String, String)>, ReceiverError> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, dbname) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let mut pairs = Vec::new();
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            pairs.push(("user".to_owned(), percent_decode(user)?));
        }
        if let Some(password) = password {
            pairs.push(("password".to_owned(), percent_decode(password)?));
        }
    }
    let (host, port) = split_host_port(hostport);
    if !host.is_empty() {
        pairs.push(("host".to_owned(), percent_decode(host)?));
    }
    if let Some(port) = port {
        pairs.push(("port".to_owned(), port.to_owned()));
    }
    if !dbname.is_empty() {
        pairs.push(("dbname".to_owned(), percent_decode(dbname)?));
    }
    for parameter in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = parameter
            .split_once('=')
            .ok_or_else(|| invalid(format!("URL parameter {parameter:?} has no value")))?;
        pairs.push((percent_decode(key)?, percent_decode(value)?));
    }
    Ok(pairs)
}

/// `host:port`, `[v6]:port`, `host` or `:port`.
fn split_host_port(hostport: &str) -> (&str, Option<&str>) {
    if let Some(inner) = hostport.strip_prefix('[') {
        return match inner.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => (hostport, None),
        };
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    }
}

fn percent_decode(text: &str) -> Result<String, ReceiverError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("bad percent escape in {text:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{text:?} is not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_form_with_quotes_and_defaults() {
        let config = ConnectionConfig::parse(
            "host=127.0.0.1 port=55432 user=postgres dbname=postgres password='it''s' application_name = 'page server'",
        );
        // libpq quotes with backslash, not doubled quotes: the '' above ends
        // one quoted value and starts another token, which has no '='.
        assert!(config.is_err());

        let config = ConnectionConfig::parse(
            r"host=127.0.0.1 port=55432 user=postgres dbname=postgres password='it\'s' application_name = 'page server'",
        )
        .unwrap();
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 55432);
        assert_eq!(config.password.as_deref(), Some("it's"));
        assert_eq!(config.application_name.as_deref(), Some("page server"));
        assert_eq!(config.address(), "127.0.0.1:55432");

        let config = ConnectionConfig::parse("").unwrap();
        assert_eq!(config.address(), "/var/run/postgresql/.s.PGSQL.5432");
        assert_eq!(config.user, "postgres");
    }

    #[test]
    fn url_form() {
        let config = ConnectionConfig::parse(
            "postgresql://repl:p%40ss@db.example:6543/postgres?application_name=ps",
        )
        .unwrap();
        assert_eq!(config.user, "repl");
        assert_eq!(config.password.as_deref(), Some("p@ss"));
        assert_eq!(config.host, "db.example");
        assert_eq!(config.port, 6543);
        assert_eq!(config.application_name.as_deref(), Some("ps"));

        let config = ConnectionConfig::parse("postgresql://[::1]:5433").unwrap();
        assert_eq!(config.address(), "[::1]:5433");
        let config =
            ConnectionConfig::parse("postgres:///postgres?host=%2Ftmp%2Fsock&port=7").unwrap();
        assert_eq!(config.address(), "/tmp/sock/.s.PGSQL.7");
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for bad in [
            "host=x port=notaport",
            "host=x sslmode=require",
            "host=x frobnicate=1",
            "host",
            "host='unterminated",
            "postgresql://h/db?x",
            "postgresql://h/%zz",
        ] {
            assert!(
                matches!(
                    ConnectionConfig::parse(bad),
                    Err(ReceiverError::ConnectionString(_))
                ),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(text in ".{0,80}") {
            let _ = ConnectionConfig::parse(&text);
            let _ = ConnectionConfig::parse(&format!("postgresql://{text}"));
        }
    }
}
