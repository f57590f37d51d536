//! What `buildpacks:set URL#ref` may name: a git repository by `https://`, `ssh://` or
//! `file://` URL, and optionally a branch, tag or commit after `#` (Heroku's syntax).
//!
//! Pure: no IO. Everything this module accepts ends up as an argument of the system `git`, so it
//! refuses what git could take for an option (a leading `-` in a host, user, path or ref, the
//! ssh `-oProxyCommand` family), credentials in the URL (they would be stored in the release and
//! printed in build logs), control characters, whitespace and anything not ASCII. Each refusal
//! says what was wrong and what to write instead.

use sha2::{Digest, Sha256};
use std::fmt;

/// The schemes a git buildpack may use. Plain `http://` and `git://` are refused: nothing would
/// tell a robot that the code it runs at build time came from where it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Ssh,
    File,
}

impl Scheme {
    /// git's name of the transport, for its protocol allow-list.
    pub fn git_protocol(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Ssh => "ssh",
            Scheme::File => "file",
        }
    }
}

/// A validated git buildpack: the URL and the ref asked for (`None`: the remote's HEAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSpec {
    pub scheme: Scheme,
    pub url: String,
    pub reference: Option<String>,
}

/// Longest spec accepted (URL and ref together).
const MAX_LEN: usize = 2048;

/// Whether `s` is meant as a git URL (and so must parse as one) rather than a built-in's name
/// or an absolute path: it has a scheme, or is scp-like `user@host:path`.
pub fn is_git_spec(s: &str) -> bool {
    if s.starts_with('/') {
        return false;
    }
    s.contains("://") || scp_like(s)
}

/// `git@github.com:org/pack`: what `git clone` takes, and what we refuse with a hint.
fn scp_like(s: &str) -> bool {
    match s.split_once(':') {
        Some((before, _)) => before.contains('@') && !before.contains('/'),
        None => false,
    }
}

impl GitSpec {
    /// Parses `URL` or `URL#ref`. The error says what is wrong and how to write it instead.
    pub fn parse(spec: &str) -> Result<GitSpec, String> {
        check_chars(spec)?;
        if spec.len() > MAX_LEN {
            return Err(format!(
                "buildpack URL is {} characters long; at most {MAX_LEN} are accepted",
                spec.len()
            ));
        }
        if scp_like(spec) && !spec.contains("://") {
            let (user_host, path) = spec.split_once(':').unwrap_or((spec, ""));
            return Err(format!(
                "buildpack {spec:?}: write scp-like git addresses as URLs: ssh://{user_host}/{}",
                path.trim_start_matches('/')
            ));
        }
        let (url, reference) = match spec.split_once('#') {
            Some((url, r)) => (url, Some(r)),
            None => (spec, None),
        };
        let reference = match reference {
            Some(r) => {
                check_ref(r).map_err(|why| format!("buildpack {spec:?}: ref {r:?} {why}"))?;
                Some(r.to_string())
            }
            None => None,
        };
        let scheme = check_url(url).map_err(|why| format!("buildpack URL {url:?} {why}"))?;
        Ok(GitSpec {
            scheme,
            url: url.to_string(),
            reference,
        })
    }

    /// The ref as written, or `HEAD` (the remote's default branch) when none was.
    pub fn wanted(&self) -> &str {
        self.reference.as_deref().unwrap_or("HEAD")
    }

    /// The name of the cache dir of this URL (every ref of a URL shares one repository):
    /// 24 hex digits of the sha256 of the URL.
    pub fn cache_key(&self) -> String {
        let digest = Sha256::digest(self.url.as_bytes());
        digest[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The repository's name (`heroku-buildpack-python` of `.../heroku-buildpack-python.git`),
    /// the name the pack's checkout dir has, so messages before `bin/detect` names it read well.
    pub fn repo_name(&self) -> String {
        let last = self
            .url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        let name = last.strip_suffix(".git").unwrap_or(last);
        let ok = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if ok {
            name.to_string()
        } else {
            "git-buildpack".to_string()
        }
    }
}

impl fmt::Display for GitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Some(r) => write!(f, "{}#{r}", self.url),
            None => f.write_str(&self.url),
        }
    }
}

/// A full commit id (sha1 or sha256), lowercase hex.
pub fn is_full_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What could be an abbreviated commit id (it could also be a branch or tag of that name).
pub fn is_short_commit(s: &str) -> bool {
    (7..40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_chars(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("buildpack URL is empty".into());
    }
    for (i, c) in spec.char_indices() {
        let what = if c.is_ascii_control() {
            "a control character"
        } else if c.is_whitespace() {
            "whitespace"
        } else if !c.is_ascii() {
            "a character that is not ASCII"
        } else {
            continue;
        };
        return Err(format!(
            "buildpack URL {:?} has {what} ({c:?}) at byte {i}; give the URL as a plain ASCII string",
            spec
        ));
    }
    Ok(())
}

/// The URL part: scheme, authority, path. Returns the scheme.
fn check_url(url: &str) -> Result<Scheme, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("has no scheme: use https://, ssh:// or file://")?;
    let scheme = match scheme {
        "https" => Scheme::Https,
        "ssh" => Scheme::Ssh,
        "file" => Scheme::File,
        "git+ssh" | "ssh+git" => return Err("uses an old ssh scheme name: write ssh://".into()),
        "http" => {
            return Err("uses plain http: use https:// (a build runs what it fetches)".into())
        }
        "git" => {
            return Err("uses the unauthenticated git:// protocol: use https:// or ssh://".into())
        }
        other => {
            return Err(format!(
                "has scheme {other:?}: a git buildpack is fetched by https://, ssh:// or file:// \
                 (in lowercase)"
            ))
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.len() <= 1 {
        return Err("names no repository path after the host".into());
    }
    check_path(path)?;
    match scheme {
        Scheme::File => {
            if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                return Err(format!(
                    "names host {authority:?}: file:// URLs name a path on this robot (file:///srv/pack)"
                ));
            }
        }
        Scheme::Https | Scheme::Ssh => {
            let host_port = match authority.rsplit_once('@') {
                Some((user, host)) => {
                    check_user(scheme, user)?;
                    host
                }
                None => authority,
            };
            check_host_port(host_port)?;
        }
    }
    Ok(scheme)
}

fn check_user(scheme: Scheme, user: &str) -> Result<(), String> {
    if scheme == Scheme::Https || user.contains(':') {
        return Err(
            "has credentials in it: they would be kept in every release and printed in build \
             logs; use a public URL, or ssh:// with the robot's ssh key"
                .into(),
        );
    }
    if user.is_empty() || user.starts_with('-') {
        return Err(format!(
            "has user name {user:?}, which is empty or starts with '-' (git would read it as an option)"
        ));
    }
    if !user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "has user name {user:?}: use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

fn check_host_port(host_port: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("has an IPv6 host without its closing ']'")?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("has IPv6 host [{addr}], which is not an address"));
        }
        match after {
            "" => (addr, None),
            p => (
                addr,
                Some(p.strip_prefix(':').ok_or("has text after its IPv6 host")?),
            ),
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("names no host".into());
    }
    if host.starts_with('-') {
        return Err(format!(
            "has host {host:?}, which starts with '-' (ssh would read it as an option)"
        ));
    }
    if !host_port.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(format!(
            "has host {host:?}: a host name has letters, digits, '.' and '-' only"
        ));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("has port {port:?}, which is not 1-65535")),
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    for seg in path.split('/') {
        if seg == ".." {
            return Err("has a '..' segment in its path".into());
        }
        if seg.starts_with('-') {
            return Err(format!(
                "has path segment {seg:?}, which starts with '-' (git could read it as an option)"
            ));
        }
    }
    if let Some(c) = path.chars().find(|c| "\\\"'`<>|;$&*?{}^%!".contains(*c)) {
        return Err(format!(
            "has {c:?} in its path; a repository path has letters, digits and -._~/+@:=, only"
        ));
    }
    Ok(())
}

/// A branch, tag or commit: git's ref-name rules, narrowed to what shows up in practice, and
/// never something git would take as an option or a refspec.
fn check_ref(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err(
            "is empty: write URL#branch, URL#tag or URL#commit, or leave out the '#'".into(),
        );
    }
    if r.len() > 255 {
        return Err("is longer than 255 characters".into());
    }
    if r.starts_with('-') {
        return Err("starts with '-' (git would read it as an option)".into());
    }
    if let Some(c) = r
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._/-".contains(*c)))
    {
        return Err(format!(
            "has {c:?}: a branch, tag or commit has letters, digits, '.', '_', '/' and '-' only"
        ));
    }
    if r.starts_with('/') || r.ends_with('/') || r.contains("//") {
        return Err("has an empty path component (a leading, trailing or doubled '/')".into());
    }
    if r.contains("..") {
        return Err("has '..', which git does not allow in a ref".into());
    }
    if r.split('/')
        .any(|c| c.starts_with('.') || c.ends_with(".lock"))
    {
        return Err("has a component starting with '.' or ending in '.lock'".into());
    }
    if r.ends_with('.') {
        return Err("ends with '.'".into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "git_spec_tests.rs"]
mod tests;
