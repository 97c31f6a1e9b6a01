//! Image references, parsed and normalised as docker does (distribution/reference):
//! `busybox` → `docker.io/library/busybox:latest`, `localhost:5000/a/b@sha256:...`.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The registry host of unqualified names.
pub const DOCKER_HUB: &str = "docker.io";

/// A normalised reference: registry host, repository path, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises; a reference with neither tag nor digest gets `latest`.
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid reference format {s:?}: {why}"));
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > 4096 {
            return Err(bad("too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                return Err(bad(
                    "a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if !valid_host(&registry) {
            return Err(bad("invalid registry host"));
        }
        let repository = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        if repository.len() > 255 || !repository.split('/').all(valid_component) {
            return Err(bad(
                "repository names are lowercase [a-z0-9] separated by '.', '_', '__', '-' or '/'",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` (docker's "name").
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as docker shows it: `busybox`, `user/app`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        familiar(&self.registry, &self.repository)
    }

    /// `name:tag` when there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `name@digest` for a digest.
    pub fn with_digest(&self, d: &Digest) -> String {
        format!("{}@{d}", self.name())
    }

    /// What the registry is asked for: the digest if there is one, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A stored full name (`docker.io/library/busybox:latest`) as docker shows it (`busybox:latest`).
pub fn familiar_full(name: &str) -> String {
    match Reference::parse(name) {
        Ok(r) => {
            let mut s = r.familiar_name();
            if let Some(d) = &r.digest {
                s.push('@');
                s.push_str(&d.to_string());
            } else if let Some(t) = &r.tag {
                s.push(':');
                s.push_str(t);
            }
            s
        }
        Err(_) => name.to_string(),
    }
}

fn familiar(registry: &str, repo: &str) -> String {
    if registry == DOCKER_HUB {
        repo.strip_prefix("library/")
            .filter(|r| !r.contains('/'))
            .unwrap_or(repo)
            .to_string()
    } else {
        format!("{registry}/{repo}")
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (h, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') {
        return host.ends_with(']') && host[1..host.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_as_docker() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar_name(), "busybox");
        let r = Reference::parse("user/app:1.0").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1.0");
        assert_eq!(r.familiar_name(), "user/app");
        let r = Reference::parse("localhost:5000/a/b").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost:5000", "a/b"));
        assert_eq!(r.familiar_name(), "localhost:5000/a/b");
        let r = Reference::parse(
            "127.0.0.1:5000/x@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        )
        .unwrap();
        assert!(r.tag.is_none() && r.digest.is_some());
        assert_eq!(
            r.object(),
            "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
        assert_eq!(
            Reference::parse("index.docker.io/library/alpine").unwrap().registry,
            "docker.io"
        );
        assert_eq!(familiar_full("docker.io/library/busybox:latest"), "busybox:latest");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a:",
            "a:-x",
            "a@sha256:zz",
            "-a",
            "a__-b",
            "a/b/",
            "host:port/x",
            ":tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
