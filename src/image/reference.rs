//! Image references: how a user names an image, and how a name is matched against
//! the store.
//!
//! Accepted forms:
//!
//! | form | meaning |
//! | --- | --- |
//! | `name` | `name:latest` |
//! | `name:tag` | the image with that name |
//! | `name@sha256:<64 hex>` | that image, which must carry the name |
//! | `sha256:<64 hex>` | that image |
//! | `sha256:<hex>` or `<hex>`, ≥ 4 hex characters | the one image whose manifest digest starts so |
//!
//! A name is lowercase `[a-z0-9._/-]`, made of `/`-separated components that do
//! not start with a separator; the first component may be a registry host with a
//! port (`localhost:5000/x`). The tag separator is the last `:` after the last
//! `/`; a tag is `[A-Za-z0-9_.-]{1,128}`. Names are not normalised: `busybox` and
//! `docker.io/library/busybox` are different names.
//!
//! A bare hex string of 4 to 63 characters could be a name or a digest prefix; it
//! is tried as a name first.
//!
//! A [`RemoteRef`] is the same name as a registry sees it,
//! `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, with Docker's defaults (`python` is
//! `docker.io/library/python:latest`): what `pull` and `push` resolve.

use std::fmt;

use super::store::Refs;
use super::{Error, Result};
use crate::digest::Digest;

/// The tag used when none is given.
pub const DEFAULT_TAG: &str = "latest";
/// Fewest hex characters a digest prefix may have.
pub const MIN_PREFIX: usize = 4;
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `name[:tag]`; `explicit_tag` says whether the user wrote the tag.
    Tagged {
        /// The name without the tag.
        name: String,
        /// The tag (`latest` if none was written).
        tag: String,
        /// Whether the tag was written.
        explicit_tag: bool,
    },
    /// `name[:tag]@sha256:<hex>`.
    Pinned {
        /// The name without the tag.
        name: String,
        /// The tag, if written.
        tag: Option<String>,
        /// The manifest digest.
        digest: Digest,
    },
    /// `sha256:<64 hex>` or 64 bare hex characters.
    Digest(Digest),
    /// A digest prefix (hex only, without `sha256:`).
    Prefix(String),
}

fn bad(reference: &str, why: impl Into<String>) -> Error {
    Error::InvalidReference { reference: reference.to_string(), why: why.into() }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parse a reference as typed by the user.
pub fn parse(s: &str) -> Result<Reference> {
    if s.is_empty() {
        return Err(bad(s, "empty"));
    }
    if let Some((left, digest)) = s.split_once('@') {
        let digest: Digest = digest.parse().map_err(|e| bad(s, format!("{e}")))?;
        let (name, tag) = split_tag(left);
        validate_name(name).map_err(|why| bad(s, why))?;
        if let Some(t) = tag {
            validate_tag(t).map_err(|why| bad(s, why))?;
        }
        return Ok(Reference::Pinned { name: name.to_string(), tag: tag.map(str::to_string), digest });
    }
    if let Some(hex) = s.strip_prefix("sha256:") {
        if !is_hex(hex) || hex.len() > 64 {
            return Err(bad(s, "a digest is sha256: followed by lowercase hex characters"));
        }
        if hex.len() < MIN_PREFIX {
            return Err(bad(s, format!("give at least {MIN_PREFIX} hex characters of the digest")));
        }
        return Ok(if hex.len() == 64 {
            Reference::Digest(Digest::from_hex(hex).map_err(|e| bad(s, format!("{e}")))?)
        } else {
            Reference::Prefix(hex.to_string())
        });
    }
    if s.len() == 64 && is_hex(s) {
        return Ok(Reference::Digest(Digest::from_hex(s).map_err(|e| bad(s, format!("{e}")))?));
    }
    let (name, tag) = split_tag(s);
    validate_name(name).map_err(|why| bad(s, why))?;
    if let Some(t) = tag {
        validate_tag(t).map_err(|why| bad(s, why))?;
    }
    Ok(Reference::Tagged {
        name: name.to_string(),
        tag: tag.unwrap_or(DEFAULT_TAG).to_string(),
        explicit_tag: tag.is_some(),
    })
}

/// Parse `NAME[:TAG]` (as given to `--name`, or found in an archive) into the
/// canonical `name:tag`.
pub fn parse_name(s: &str) -> Result<String> {
    match parse(s)? {
        Reference::Tagged { name, tag, .. } => Ok(format!("{name}:{tag}")),
        _ => Err(bad(s, "expected NAME[:TAG], not a digest")),
    }
}

/// Split `name[:tag]` at the last `:` after the last `/`.
pub fn split_tag(s: &str) -> (&str, Option<&str>) {
    let after_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[after_slash..].rfind(':') {
        Some(i) => (&s[..after_slash + i], Some(&s[after_slash + i + 1..])),
        None => (s, None),
    }
}

/// Validate a name (without tag).
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} characters"));
    }
    for (i, comp) in name.split('/').enumerate() {
        if comp.is_empty() {
            return Err("empty path component in the name".into());
        }
        // A first component with a port is a registry host: `localhost:5000`.
        let comp = match comp.split_once(':') {
            Some((host, port)) if i == 0 && name.contains('/') => {
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("registry port {port:?} is not a number"));
                }
                host
            }
            _ => comp,
        };
        if let Some(c) = comp
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "character {c:?} is not allowed in a name (use lowercase a-z, 0-9, '.', '_', '-' and '/')"
            ));
        }
        if comp.starts_with(['.', '_', '-']) {
            return Err(format!("name component {comp:?} starts with a separator"));
        }
    }
    Ok(())
}

/// Validate a tag.
pub fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    if tag.is_empty() || tag.len() > MAX_TAG {
        return Err(format!("a tag has 1 to {MAX_TAG} characters"));
    }
    if let Some(c) = tag.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("character {c:?} is not allowed in a tag (use A-Z, a-z, 0-9, '_', '.', '-')"));
    }
    Ok(())
}

/// The stored images whose manifest digest starts with `hex`.
fn by_prefix<'a>(refs: &'a Refs, hex: &str) -> Vec<&'a Digest> {
    refs.images.keys().filter(|d| d.hex().starts_with(hex)).collect()
}

/// Find the image a reference names: its manifest digest and, when it matched by
/// name, the `name:tag`.
pub(crate) fn find(refs: &Refs, reference: &str) -> Result<(Digest, Option<String>)> {
    let not_found = || Error::NotFound { reference: reference.to_string() };
    let unique = |hex: &str| -> Result<Digest> {
        match by_prefix(refs, hex).as_slice() {
            [] => Err(not_found()),
            [one] => Ok((*one).clone()),
            many => Err(Error::Ambiguous { reference: reference.to_string(), count: many.len() }),
        }
    };
    match parse(reference)? {
        Reference::Tagged { name, tag, explicit_tag } => {
            let full = format!("{name}:{tag}");
            if let Some((d, _)) = refs.images.iter().find(|(_, e)| e.names.contains(&full)) {
                return Ok((d.clone(), Some(full)));
            }
            if !explicit_tag && name.len() >= MIN_PREFIX && is_hex(&name) {
                return Ok((unique(&name)?, None));
            }
            Err(not_found())
        }
        Reference::Pinned { name, tag, digest } => {
            let entry = refs.images.get(&digest).ok_or_else(not_found)?;
            let matched = entry.names.iter().find(|n| {
                let (n_name, n_tag) = split_tag(n);
                n_name == name && tag.as_deref().is_none_or(|t| Some(t) == n_tag)
            });
            match matched {
                Some(n) => Ok((digest, Some(n.clone()))),
                None => Err(Error::InvalidReference {
                    reference: reference.to_string(),
                    why: format!(
                        "image {digest} is stored but is not named {:?}; its names: {}",
                        match &tag {
                            Some(t) => format!("{name}:{t}"),
                            None => name.clone(),
                        },
                        if entry.names.is_empty() { "none".to_string() } else { entry.names.join(", ") }
                    ),
                }),
            }
        }
        Reference::Digest(d) => {
            if refs.images.contains_key(&d) {
                Ok((d, None))
            } else {
                Err(not_found())
            }
        }
        Reference::Prefix(hex) => Ok((unique(&hex)?, None)),
    }
}

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
    use crate::image::store::RefEntry;

    fn tagged(name: &str, tag: &str, explicit: bool) -> Reference {
        Reference::Tagged { name: name.into(), tag: tag.into(), explicit_tag: explicit }
    }

    #[test]
    fn parses_the_forms() {
        assert_eq!(parse("busybox").unwrap(), tagged("busybox", "latest", false));
        assert_eq!(parse("fixtures/busybox:1.35").unwrap(), tagged("fixtures/busybox", "1.35", true));
        assert_eq!(parse("localhost:5000/x:y").unwrap(), tagged("localhost:5000/x", "y", true));
        assert_eq!(parse("localhost:5000/x").unwrap(), tagged("localhost:5000/x", "latest", false));
        let d = Digest::of_bytes(b"m");
        assert_eq!(parse(&d.to_string()).unwrap(), Reference::Digest(d.clone()));
        assert_eq!(parse(d.hex()).unwrap(), Reference::Digest(d.clone()));
        assert_eq!(parse("sha256:abcd").unwrap(), Reference::Prefix("abcd".into()));
        assert_eq!(
            parse(&format!("a/b@{d}")).unwrap(),
            Reference::Pinned { name: "a/b".into(), tag: None, digest: d.clone() }
        );
        assert_eq!(
            parse(&format!("a:t@{d}")).unwrap(),
            Reference::Pinned { name: "a".into(), tag: Some("t".into()), digest: d }
        );
    }

    #[test]
    fn refuses_bad_names_with_reason() {
        for (r, why) in [
            ("Busybox", "not allowed in a name"),
            ("-x", "starts with a separator"),
            ("a//b", "empty path component"),
            ("a:", "a tag has 1 to 128"),
            ("a:b/c", "registry port \"b\" is not a number"),
            ("a:b c", "not allowed in a tag"),
            ("sha256:ab", "at least 4"),
            ("sha256:XYZ1", "lowercase hex"),
            ("a@sha256:12", "invalid digest"),
            ("host:port/x", "not a number"),
            ("", "empty"),
        ] {
            let e = parse(r).unwrap_err().to_string();
            assert!(e.contains(why), "{r:?}: {e}");
            assert!(e.starts_with("invalid image reference"), "{e}");
        }
        assert!(parse(&format!("a:{}", "t".repeat(129))).is_err());
        assert!(parse(&format!("a:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn parse_name_canonicalises() {
        assert_eq!(parse_name("x").unwrap(), "x:latest");
        assert_eq!(parse_name("localhost:5000/x").unwrap(), "localhost:5000/x:latest");
        assert!(parse_name(&Digest::of_bytes(b"").to_string()).is_err());
    }

    fn refs_with(images: &[(&Digest, &[&str])]) -> Refs {
        let mut refs = Refs::default();
        for (d, names) in images {
            refs.images.insert(
                (*d).clone(),
                RefEntry { names: names.iter().map(|s| s.to_string()).collect(), ..RefEntry::default() },
            );
        }
        refs
    }

    /// Two digests sharing their first `n` hex characters.
    fn two_with_common_prefix(n: usize) -> (Digest, Digest) {
        let a = Digest::of_bytes(b"first");
        let mut other = a.hex()[..n].to_string();
        other.push_str(&"0".repeat(64 - n));
        let b = Digest::from_hex(&other).unwrap();
        assert_ne!(a, b);
        (a, b)
    }

    #[test]
    fn find_by_every_form() {
        let (a, b) = two_with_common_prefix(5);
        let refs = refs_with(&[(&a, &["busybox:latest", "busybox:1"]), (&b, &["other:x"])]);
        assert_eq!(find(&refs, "busybox").unwrap(), (a.clone(), Some("busybox:latest".into())));
        assert_eq!(find(&refs, "busybox:1").unwrap(), (a.clone(), Some("busybox:1".into())));
        assert_eq!(find(&refs, &format!("busybox@{a}")).unwrap(), (a.clone(), Some("busybox:latest".into())));
        assert_eq!(find(&refs, &a.to_string()).unwrap(), (a.clone(), None));
        assert_eq!(find(&refs, &a.hex()[..8]).unwrap(), (a.clone(), None));
        assert_eq!(find(&refs, &format!("sha256:{}", &b.hex()[..8])).unwrap(), (b.clone(), None));

        let e = find(&refs, &a.hex()[..5]).unwrap_err().to_string();
        assert_eq!(e, format!("{:?} matches 2 images; give more digest characters", &a.hex()[..5]));
        let e = find(&refs, "foo:bar").unwrap_err().to_string();
        assert_eq!(e, "no image matches \"foo:bar\"; see exprun image ls");
        let e = find(&refs, &format!("other@{a}")).unwrap_err().to_string();
        assert!(e.contains("is not named \"other\""), "{e}");
        assert!(find(&refs, "busybox:2").is_err());
    }

    #[test]
    fn a_name_wins_over_a_prefix() {
        let d = Digest::of_bytes(b"x");
        let prefix = &d.hex()[..6];
        let other = Digest::of_bytes(b"y");
        let name = format!("{prefix}:latest");
        let refs = refs_with(&[(&d, &[]), (&other, &[name.as_str()])]);
        assert_eq!(find(&refs, prefix).unwrap().0, other);
    }

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
