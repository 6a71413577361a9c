//! The `--nats` list of servers: `nats://[user:pass@|token@]HOST[:PORT]`,
//! comma-separated.
//!
//! **Owns:** the URL grammar the bridge accepts (scheme `nats://` or none,
//! default port 4222, percent-decoded credentials, IPv6 in brackets) and
//! how a server is named in logs.
//!
//! **Must never:** print a password or token: [`Server`]'s `Display` and
//! every [`UrlError`] message show the address only, the user info replaced
//! by `***`.

use std::fmt;
use std::net::Ipv6Addr;

/// The port of a URL that names none (the NATS client port).
pub(crate) const DEFAULT_PORT: u16 = 4222;

/// The one scheme accepted.
const SCHEME: &str = "nats";

/// How the broker authenticates to a server (the CONNECT fields). Its
/// `Debug` masks the password and the token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No credentials.
    None,
    /// `user:pass@`: the `user` and `pass` fields.
    UserPass {
        /// The user name, percent-decoded.
        user: String,
        /// The password, percent-decoded.
        pass: String,
    },
    /// `token@`: the `auth_token` field, percent-decoded.
    Token(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::UserPass { user, .. } => f
                .debug_struct("UserPass")
                .field("user", user)
                .field("pass", &"***")
                .finish(),
            Auth::Token(_) => f.debug_tuple("Token").field(&"***").finish(),
        }
    }
}

/// One server of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Server {
    /// Host name or IP address; an IPv6 address without its brackets.
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
    /// Credentials sent in CONNECT.
    pub(crate) auth: Auth,
}

impl Server {
    /// `host:port` for connecting and logging (never the credentials; IPv6
    /// in brackets).
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Server {
    /// The same as [`Server::address`]: never prints credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())
    }
}

/// Parses `nats://HOST:PORT[,nats://…]` (comma-separated, spaces around
/// commas allowed). Scheme `nats://` optional; default port 4222;
/// `user:pass@` or `token@` userinfo, percent-decoded; IPv6 `[::1]:4222`.
/// A single trailing `/` is accepted, any other path refused.
///
/// # Errors
/// A [`UrlError`] naming the first bad entry (its credentials masked).
pub(crate) fn parse_servers(list: &str) -> Result<Vec<Server>, UrlError> {
    if list.trim().is_empty() {
        return Err(UrlError::EmptyList);
    }
    list.split(',')
        .enumerate()
        .map(|(i, entry)| parse_server(entry.trim(), i + 1))
        .collect()
}

/// Why the list of servers is refused. Every `url` is the entry with its
/// user info replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlError {
    /// The list is empty or blank.
    EmptyList,
    /// An empty entry (`a,,b`); its position, from 1.
    EmptyEntry(usize),
    /// `tls://`: the bridge speaks plain TCP only.
    TlsNotSupported {
        /// The entry, masked.
        url: String,
    },
    /// A scheme other than `nats://`.
    UnsupportedScheme {
        /// The entry, masked.
        url: String,
        /// The scheme as written.
        scheme: String,
    },
    /// No host.
    EmptyHost {
        /// The entry, masked.
        url: String,
    },
    /// A host with characters no host name has, a bad IPv6 address, or an
    /// IPv6 address without brackets.
    BadHost {
        /// The entry, masked.
        url: String,
    },
    /// A port that is not a number from 1 to 65535.
    BadPort {
        /// The entry, masked.
        url: String,
    },
    /// Empty user info, an empty user name, a bad `%` escape or one that
    /// does not decode to UTF-8.
    BadUserinfo {
        /// The entry, masked.
        url: String,
    },
    /// A path, query or fragment after the address.
    Path {
        /// The entry, masked.
        url: String,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::EmptyList => f.write_str("no nats server url given"),
            UrlError::EmptyEntry(n) => write!(f, "nats url list: entry {n} is empty"),
            UrlError::TlsNotSupported { url } => write!(
                f,
                "nats url '{url}': TLS is not supported, use a plain nats:// url"
            ),
            UrlError::UnsupportedScheme { url, scheme } => write!(
                f,
                "nats url '{url}': unsupported scheme '{scheme}', use nats://"
            ),
            UrlError::EmptyHost { url } => write!(f, "nats url '{url}': empty host"),
            UrlError::BadHost { url } => write!(
                f,
                "nats url '{url}': bad host (an IPv6 address goes in brackets)"
            ),
            UrlError::BadPort { url } => write!(f, "nats url '{url}': bad port"),
            UrlError::BadUserinfo { url } => write!(
                f,
                "nats url '{url}': bad user info (empty, or a bad %-escape)"
            ),
            UrlError::Path { url } => write!(f, "nats url '{url}': unexpected path"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Parses one trimmed entry, the `position`th of the list.
fn parse_server(entry: &str, position: usize) -> Result<Server, UrlError> {
    if entry.is_empty() {
        return Err(UrlError::EmptyEntry(position));
    }
    let url = mask(entry);
    let rest = match split_scheme(entry) {
        None => entry,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(SCHEME) => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("tls") => {
            return Err(UrlError::TlsNotSupported { url });
        }
        Some((scheme, _)) => {
            let scheme = scheme.to_owned();
            return Err(UrlError::UnsupportedScheme { url, scheme });
        }
    };
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, rest),
    };
    let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
    if hostport.contains(['/', '?', '#']) {
        return Err(UrlError::Path { url });
    }
    let (host, port) = match split_host_port(hostport) {
        Ok(parts) => parts,
        Err(HostPortError::EmptyHost) => return Err(UrlError::EmptyHost { url }),
        Err(HostPortError::BadHost) => return Err(UrlError::BadHost { url }),
        Err(HostPortError::BadPort) => return Err(UrlError::BadPort { url }),
    };
    let auth = match userinfo {
        None => Auth::None,
        Some(userinfo) => parse_userinfo(userinfo).ok_or(UrlError::BadUserinfo { url })?,
    };
    Ok(Server {
        host: host.to_owned(),
        port,
        auth,
    })
}

/// `scheme://rest` -> `(scheme, rest)`, if what comes before `://` looks
/// like a scheme (so that `user:pass@…` never does).
fn split_scheme(entry: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = entry.split_once("://")?;
    let is_scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    (!scheme.is_empty() && scheme.chars().all(is_scheme_char)).then_some((scheme, rest))
}

/// The entry for a message: everything up to the last `@` after the scheme
/// becomes `***`.
fn mask(entry: &str) -> String {
    let (prefix, rest) = match split_scheme(entry) {
        Some((scheme, rest)) => (entry.get(..scheme.len() + 3).unwrap_or_default(), rest),
        None => ("", entry),
    };
    match rest.rsplit_once('@') {
        Some((_, hostport)) => format!("{prefix}***@{hostport}"),
        None => entry.to_owned(),
    }
}

/// What is wrong with `host[:port]`.
enum HostPortError {
    EmptyHost,
    BadHost,
    BadPort,
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` -> host (without brackets)
/// and port.
fn split_host_port(hostport: &str) -> Result<(&str, u16), HostPortError> {
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(HostPortError::BadHost)?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(HostPortError::BadHost);
        }
        let port = match after {
            "" => DEFAULT_PORT,
            _ => parse_port(after.strip_prefix(':').ok_or(HostPortError::BadHost)?)?,
        };
        return Ok((host, port));
    }
    let (host, port) = match hostport.split_once(':') {
        Some((_, port)) if port.contains(':') => return Err(HostPortError::BadHost),
        Some((host, port)) => (host, parse_port(port)?),
        None => (hostport, DEFAULT_PORT),
    };
    if host.is_empty() {
        return Err(HostPortError::EmptyHost);
    }
    let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if !host.chars().all(host_char) {
        return Err(HostPortError::BadHost);
    }
    Ok((host, port))
}

/// A port: 1 to 65535, digits only.
fn parse_port(port: &str) -> Result<u16, HostPortError> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostPortError::BadPort);
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostPortError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// `user:pass` or `token`, percent-decoded; `None` if empty, with an empty
/// user name, or badly escaped.
fn parse_userinfo(userinfo: &str) -> Option<Auth> {
    if userinfo.is_empty() {
        return None;
    }
    match userinfo.split_once(':') {
        Some(("", _)) => None,
        Some((user, pass)) => Some(Auth::UserPass {
            user: percent_decode(user)?,
            pass: percent_decode(pass)?,
        }),
        None => Some(Auth::Token(percent_decode(userinfo)?)),
    }
}

/// Decodes `%XX` escapes (either case); `None` for a bad escape or bytes
/// that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
