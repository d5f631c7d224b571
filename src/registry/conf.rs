//! podman's registries.conf (containers-registries.conf(5), version 2): where
//! a reference is really fetched from.
//!
//! Read: `$CONTAINERS_REGISTRIES_CONF` alone when set; otherwise
//! `$XDG_CONFIG_HOME/containers/registries.conf` (else `~/.config/...`) when
//! it exists, else `/etc/containers/registries.conf`, then the `*.conf` files
//! of the `registries.conf.d` directory beside it, in name order, each
//! `[[registry]]` replacing an earlier one with the same prefix. Of each
//! `[[registry]]`, exprun takes:
//!
//! - `prefix` (default: `location`): `host[/path]`, or `*.domain` for every
//!   subdomain; the longest that matches `registry/repository` applies;
//! - `location`: what replaces the prefix in the reference;
//! - `insecure`: no TLS verification, and plain HTTP when HTTPS fails;
//! - `blocked`: pulls and pushes of it are refused;
//! - `[[registry.mirror]]` (`location`, `insecure`, `pull-from-mirror` = `all`,
//!   `digest-only` or `tag-only`): tried in order before `location`, for pulls;
//! - `token-realms` (exprun's own key, which podman ignores), of a registry or
//!   a mirror: the token services (`http://auth.lab:5001`) on another origin
//!   that may get its credentials even over plain HTTP (see [`super::auth::realm_trust`]).
//!
//! `unqualified-search-registries` and `short-name-mode` are not read: a
//! reference without a registry is Docker Hub's, as with docker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::client::ClientOptions;
use super::http::Origin;
use super::Error;
use crate::image::reference::RemoteRef;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    registry: Vec<Registry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Registry {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<Mirror>,
    #[serde(default)]
    token_realms: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Mirror {
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: Option<String>,
    #[serde(default)]
    token_realms: Vec<String>,
}

/// One place to fetch a reference from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference there (same tag and digest, maybe another registry and
    /// repository).
    pub r: RemoteRef,
    /// `insecure = true`: no TLS verification, plain HTTP when HTTPS fails.
    pub insecure: bool,
    /// Whether it is a mirror.
    pub mirror: bool,
    /// Token services of other origins that may get its credentials
    /// (`token-realms`).
    pub token_realms: Vec<Origin>,
}

/// The `[[registry]]` entries that apply, by prefix.
#[derive(Debug, Default)]
pub struct RegistriesConf {
    entries: BTreeMap<String, Registry>,
    /// The files read, for messages.
    pub files: Vec<PathBuf>,
}

impl RegistriesConf {
    /// Read the files as podman does (see the module documentation).
    pub fn load() -> Result<Self, Error> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut conf = Self::default();
        if let Some(path) = env("CONTAINERS_REGISTRIES_CONF") {
            conf.read(&path, true)?;
            return Ok(conf);
        }
        let user = env("XDG_CONFIG_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".config")))
            .map(|d| d.join("containers/registries.conf"))
            .filter(|p| p.exists());
        let main = user.unwrap_or_else(|| PathBuf::from("/etc/containers/registries.conf"));
        conf.read(&main, false)?;
        let dropins = main.with_extension("conf.d");
        if let Ok(dir) = std::fs::read_dir(&dropins) {
            let mut names: Vec<PathBuf> = dir
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            names.sort();
            for p in names {
                conf.read(&p, true)?;
            }
        }
        Ok(conf)
    }

    /// Add the entries of the file at `path` (which may be missing unless `must`).
    fn read(&mut self, path: &Path, must: bool) -> Result<(), Error> {
        let bad = |why: String| Error::Invalid { what: path.display().to_string(), why };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must => return Ok(()),
            Err(e) => return Err(bad(format!("cannot be read: {e}"))),
        };
        self.add(&text).map_err(|why| bad(format!("{why}; see containers-registries.conf(5)")))?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// The entries of one registries.conf text.
    pub(crate) fn from_text(text: &str) -> Result<Self, String> {
        let mut conf = Self::default();
        conf.add(text)?;
        Ok(conf)
    }

    /// Add the entries of a registries.conf text.
    fn add(&mut self, text: &str) -> Result<(), String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        for (i, reg) in file.registry.into_iter().enumerate() {
            let which = |field: &str| format!("[[registry]] {} {field}", i + 1);
            let prefix = reg
                .prefix
                .clone()
                .or_else(|| reg.location.clone())
                .ok_or_else(|| format!("{} has neither prefix nor location", which("")))?;
            let prefix = prefix.trim_end_matches('/').to_string();
            if prefix.contains("://") || prefix.is_empty() {
                return Err(format!("{}: {prefix:?} is not host[/path] or *.domain", which("prefix")));
            }
            if prefix.starts_with("*.") && reg.location.is_some() {
                return Err(format!(
                    "{}: a wildcard prefix ({prefix}) cannot have a location; give mirrors instead",
                    which("location")
                ));
            }
            check_realms(&reg.token_realms, &which("token-realms"))?;
            for m in &reg.mirror {
                check_realms(&m.token_realms, &which("mirror token-realms"))?;
                match m.pull_from_mirror.as_deref() {
                    None | Some("all" | "digest-only" | "tag-only") => {}
                    Some(other) => {
                        return Err(format!(
                            "{}: {other:?} is not all, digest-only or tag-only",
                            which("mirror pull-from-mirror")
                        ))
                    }
                }
            }
            self.entries.insert(prefix, reg);
        }
        Ok(())
    }

    /// Where to fetch `r` from, in order: for a pull, the mirrors that apply,
    /// then the location; for a push, the location. Refused when blocked.
    pub fn endpoints(&self, r: &RemoteRef, pull: bool) -> Result<Vec<Endpoint>, Error> {
        let full = format!("{}/{}", r.registry, r.repository);
        let found = self
            .entries
            .iter()
            .filter(|(prefix, _)| matches(prefix, &r.registry, &full))
            .max_by_key(|(prefix, _)| prefix.len());
        let Some((prefix, reg)) = found else {
            return Ok(vec![Endpoint {
                r: r.clone(),
                insecure: false,
                mirror: false,
                token_realms: Vec::new(),
            }]);
        };
        if reg.blocked {
            return Err(Error::Invalid {
                what: r.to_string(),
                why: format!(
                    "registries.conf blocks {prefix} ({}); remove `blocked = true` there to use it",
                    self.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let rewrite = |location: &str| -> Result<RemoteRef, Error> {
            // A wildcard prefix stands for the registry host alone.
            let matched = if prefix.starts_with("*.") { r.registry.len() } else { prefix.len() };
            let target = format!("{location}{}", &full[matched..]);
            let (registry, repository) = target.split_once('/').ok_or_else(|| Error::Invalid {
                what: format!("registries.conf location {location:?}"),
                why: format!("gives {target:?}, which has no repository"),
            })?;
            Ok(RemoteRef {
                registry: registry.to_string(),
                repository: repository.to_string(),
                tag: r.tag.clone(),
                digest: r.digest.clone(),
            })
        };
        let mut out = Vec::new();
        if pull {
            for m in &reg.mirror {
                let wanted = match m.pull_from_mirror.as_deref() {
                    Some("digest-only") => r.digest.is_some(),
                    Some("tag-only") => r.digest.is_none(),
                    _ => true,
                };
                if wanted {
                    out.push(Endpoint {
                        r: rewrite(&m.location)?,
                        insecure: m.insecure,
                        mirror: true,
                        token_realms: origins(&m.token_realms),
                    });
                }
            }
        }
        // A wildcard prefix has no location of its own: the host matched.
        let location = match reg.location.as_deref() {
            Some(l) if !prefix.starts_with("*.") => l,
            _ if prefix.starts_with("*.") => r.registry.as_str(),
            _ => prefix,
        };
        out.push(Endpoint {
            r: rewrite(location)?,
            insecure: reg.insecure,
            mirror: false,
            token_realms: origins(&reg.token_realms),
        });
        Ok(out)
    }

    /// The token services listed for `registry` (a host, for `exprun
    /// login`): those of each `[[registry]]` whose prefix or location is it,
    /// and of each mirror there.
    pub fn token_realms(&self, registry: &str) -> Vec<Origin> {
        let host = |location: &str| location.split('/').next().unwrap_or("").to_string();
        let mut out = Vec::new();
        for (prefix, reg) in &self.entries {
            let by_prefix = matches(prefix, registry, registry) || host(prefix) == registry;
            if by_prefix || reg.location.as_deref().is_some_and(|l| host(l) == registry) {
                out.extend(origins(&reg.token_realms));
            }
            for m in reg.mirror.iter().filter(|m| host(&m.location) == registry) {
                out.extend(origins(&m.token_realms));
            }
        }
        out
    }
}

/// Refuse a `token-realms` entry that is not an http(s) URL.
fn check_realms(realms: &[String], which: &str) -> Result<(), String> {
    match realms.iter().find(|r| Origin::of(r).is_none()) {
        Some(bad) => Err(format!(
            "{which}: {bad:?} is not an http:// or https:// URL of a token service, e.g. \"http://auth.lab:5001\""
        )),
        None => Ok(()),
    }
}

/// The origins of `token-realms` entries (checked when read).
fn origins(realms: &[String]) -> Vec<Origin> {
    realms.iter().filter_map(|r| Origin::of(r)).collect()
}

/// Where `r` is, leaving mirrors aside (for a push, and for a run's artifact):
/// its location in registries.conf (refused when blocked), with `o` for it.
pub fn location(r: &RemoteRef, o: &ClientOptions) -> Result<(RemoteRef, ClientOptions), Error> {
    let ep = RegistriesConf::load()?.endpoints(r, false)?.remove(0);
    let mut o = ClientOptions {
        insecure_tls: o.insecure_tls || ep.insecure,
        http_fallback: ep.insecure,
        ..o.clone()
    };
    o.token_realms.extend(ep.token_realms);
    Ok((ep.r, o))
}

/// Whether `prefix` (`host[/path]` or `*.domain`) covers `full`
/// (`registry/repository`) of `registry`.
fn matches(prefix: &str, registry: &str, full: &str) -> bool {
    match prefix.strip_prefix("*.") {
        Some(domain) => registry.split(':').next().is_some_and(|h| h.ends_with(&format!(".{domain}"))),
        None => full == prefix || full.starts_with(&format!("{prefix}/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        RegistriesConf::from_text(text).unwrap()
    }

    fn hosts(c: &RegistriesConf, r: &str, pull: bool) -> Vec<String> {
        let r = RemoteRef::parse(r).unwrap();
        c.endpoints(&r, pull).unwrap().iter().map(|e| e.r.to_string()).collect()
    }

    #[test]
    fn mirrors_come_first_for_pulls_and_the_location_replaces_the_prefix() {
        let c = conf(
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.lab:5000/hub"
insecure = true
[[registry.mirror]]
location = "mirror.gcr.io"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "quay.io/lab"
location = "registry.lab/quay-lab"
"#,
        );
        assert_eq!(
            hosts(&c, "python:3.12", true),
            ["mirror.lab:5000/hub/library/python:3.12", "docker.io/library/python:3.12"]
        );
        let d = format!("python@sha256:{}", "a".repeat(64));
        assert_eq!(hosts(&c, &d, true).len(), 3);
        assert_eq!(hosts(&c, "python:3.12", false), ["docker.io/library/python:3.12"]);
        assert_eq!(hosts(&c, "quay.io/lab/tool:1", true), ["registry.lab/quay-lab/tool:1"]);
        assert_eq!(hosts(&c, "quay.io/other/tool:1", true), ["quay.io/other/tool:1"]);
        let r = RemoteRef::parse("python").unwrap();
        let eps = c.endpoints(&r, true).unwrap();
        assert!(eps[0].insecure && eps[0].mirror && !eps[1].mirror);
    }

    #[test]
    fn wildcard_prefixes_keep_the_host_and_their_mirrors_replace_it() {
        let c = conf(
            "[[registry]]\nprefix = \"*.lab.example\"\n[[registry.mirror]]\nlocation = \"cache.lab:5000\"\n",
        );
        assert_eq!(
            hosts(&c, "a.lab.example/ns/img:1", true),
            ["cache.lab:5000/ns/img:1", "a.lab.example/ns/img:1"]
        );
        assert_eq!(hosts(&c, "a.lab.example:8443/ns/img:1", false), ["a.lab.example:8443/ns/img:1"]);
        let mut bad = RegistriesConf::default();
        let e = bad.add("[[registry]]\nprefix = \"*.x\"\nlocation = \"y\"\n").unwrap_err();
        assert!(e.contains("wildcard"), "{e}");
    }

    #[test]
    fn blocked_and_wildcard_prefixes() {
        let c = conf("[[registry]]\nprefix = \"*.internal\"\nblocked = true\n[[registry]]\nlocation = \"ok.internal\"\n");
        let e = c.endpoints(&RemoteRef::parse("x.internal/a/b").unwrap(), true).unwrap_err().to_string();
        assert!(e.contains("blocks *.internal"), "{e}");
        assert_eq!(hosts(&c, "ok.internal/a/b", true), ["ok.internal/a/b"]);
    }

    #[test]
    fn token_realms_are_origins_for_the_registry_or_mirror_that_lists_them() {
        let c = conf(
            r#"
[[registry]]
location = "registry.lab:5000"
token-realms = ["http://auth.lab:5001/token"]
[[registry.mirror]]
location = "cache.lab/hub"
token-realms = ["http://cache-auth.lab"]
"#,
        );
        let eps = c.endpoints(&RemoteRef::parse("registry.lab:5000/a/b").unwrap(), true).unwrap();
        let shown = |e: &Endpoint| e.token_realms.iter().map(|o| o.to_string()).collect::<Vec<_>>();
        assert_eq!(shown(&eps[0]), ["http://cache-auth.lab:80"]);
        assert_eq!(shown(&eps[1]), ["http://auth.lab:5001"]);
        assert_eq!(c.token_realms("registry.lab:5000"), [Origin::of("http://auth.lab:5001").unwrap()]);
        assert_eq!(c.token_realms("cache.lab"), [Origin::of("http://cache-auth.lab").unwrap()]);
        assert!(c.token_realms("other.lab").is_empty());
        let e = RegistriesConf::from_text("[[registry]]\nlocation = \"a\"\ntoken-realms = [\"auth.lab\"]\n")
            .unwrap_err();
        assert!(e.contains("token-realms") && e.contains("\"auth.lab\""), "{e}");
    }

    #[test]
    fn bad_files_say_what() {
        let mut c = RegistriesConf::default();
        assert!(c
            .add("[[registry]]\ninsecure = true\n")
            .unwrap_err()
            .contains("neither prefix nor location"));
        assert!(c.add("[[registry]]\nlocation = \"a\"\n[[registry.mirror]]\nlocation = \"b\"\npull-from-mirror = \"sometimes\"\n").unwrap_err().contains("sometimes"));
        assert!(c.add("[[registry]\n").is_err());
    }
}
