//! Remote references: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, with Docker's
//! defaults (`python` is `docker.io/library/python:latest`).

use std::fmt;

use crate::digest::Digest;
use crate::image::reference::{split_tag, validate_name, validate_tag, DEFAULT_TAG};

/// Docker Hub's registry name, as users write it.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed remote reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`, ...
    pub registry: String,
    /// `library/python`, `org/tool`, ...
    pub repository: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
    /// The digest, if one was given; it wins over the tag.
    pub digest: Option<Digest>,
}

impl RemoteRef {
    /// Parse a reference as `docker pull` and `podman pull` accept it.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.contains("://") {
            return Err("give the reference without a scheme, e.g. ghcr.io/org/image:tag".into());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|e| format!("digest {d:?}: {e}"))?)),
            None => (s, None),
        };
        let (name, tag) = split_tag(rest);
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !registry.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
            return Err(format!("registry {registry:?} is not a host name with an optional :port"));
        }
        if let Some((_, port)) = registry.rsplit_once(':').filter(|_| !registry.ends_with(']')) {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("registry {registry:?}: port {port:?} is not a number"));
            }
        }
        validate_name(&repository)?;
        if let Some(t) = tag {
            validate_tag(t)?;
        }
        Ok(Self { registry, repository, tag: tag.map(str::to_string), digest })
    }

    /// The host (and port) the registry API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest, else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The name the image gets in the store, `name:tag` as `docker images` shows
    /// it: Docker Hub's official images without `docker.io/library/`, others in
    /// full; `None` when pulled by digest alone.
    pub fn store_name(&self) -> Option<String> {
        if self.digest.is_some() && self.tag.is_none() {
            return None;
        }
        let name = if self.registry == DOCKER_HUB {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        Some(format!("{name}:{}", self.tag.as_deref().unwrap_or(DEFAULT_TAG)))
    }

    /// This reference pinned to `digest` (tag kept, for the record).
    pub fn pinned(&self, digest: &Digest) -> Self {
        Self { digest: Some(digest.clone()), ..self.clone() }
    }

    /// Whether the registry is on this machine (plain HTTP is then the default).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.registry,
        };
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RemoteRef {
        RemoteRef::parse(s).unwrap()
    }

    #[test]
    fn docker_defaults() {
        let r = p("python:3.12");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("docker.io", "library/python"));
        assert_eq!(r.reference(), "3.12");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.store_name().unwrap(), "python:3.12");
        assert_eq!(r.to_string(), "docker.io/library/python:3.12");
        assert_eq!(p("index.docker.io/library/python").store_name().unwrap(), "python:latest");
        assert_eq!(p("jupyter/scipy-notebook").repository, "jupyter/scipy-notebook");
        assert_eq!(p("busybox").reference(), "latest");
    }

    #[test]
    fn registries_ports_and_digests() {
        let r = p("127.0.0.1:5000/fixtures/busybox:latest");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "fixtures/busybox"));
        assert!(r.is_loopback());
        assert_eq!(r.store_name().unwrap(), "127.0.0.1:5000/fixtures/busybox:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("ghcr.io/org/tool@{d}"));
        assert_eq!(r.reference(), d);
        assert_eq!(r.store_name(), None);
        assert!(!r.is_loopback());
        assert_eq!(p("localhost/x").registry, "localhost");
        assert_eq!(p(&format!("ghcr.io/org/tool:1@{d}")).store_name().unwrap(), "ghcr.io/org/tool:1");
    }

    #[test]
    fn bad_references_say_why() {
        for (s, why) in [
            ("https://ghcr.io/x", "without a scheme"),
            ("ghcr.io/Org/x", "not allowed"),
            ("x@sha256:zz", "digest"),
            ("x:bad/tag", "not a number"),
            ("busybox:bad/tag", "not a number"),
            ("ex ample.com/x", "host name"),
        ] {
            let e = RemoteRef::parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
