//! Credentials and the registry's authentication challenge.
//!
//! Credentials are read from the files `podman login`, `docker login` and
//! `exprun login` write, in the order containers-auth.json(5) gives, first
//! match wins: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`
//! (`/run/containers/$UID/auth.json` without it), `$XDG_CONFIG_HOME` (or
//! `~/.config`)`/containers/auth.json`, `$DOCKER_CONFIG/config.json`,
//! `~/.docker/config.json`. An entry is found by registry host
//! (`https://index.docker.io/v1/` is Docker Hub), or by `host/namespace` prefix
//! of the repository (podman's per-namespace entries). A `credHelpers` entry or
//! `credsStore` runs `docker-credential-<helper> get`.
//!
//! Only `exprun login` writes, to the first of those paths ([`write_path`]),
//! as podman does; `exprun logout` removes. Credentials go into requests and
//! that file only: never into records, logs or errors.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use super::http::Origin;
use super::Error;
use crate::image::reference::{RemoteRef, DOCKER_HUB};

/// A user name and password (or token).
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password, token or secret.
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn env_path(k: &str) -> Option<PathBuf> {
    std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// podman's auth file: `$XDG_RUNTIME_DIR/containers/auth.json`, else
/// `/run/containers/$UID/auth.json` (not inside a user namespace of ours, where
/// the uid is not the caller's).
fn runtime_auth_file() -> Option<PathBuf> {
    match env_path("XDG_RUNTIME_DIR") {
        Some(d) => Some(d.join("containers/auth.json")),
        None if crate::userns::in_initial_userns() => {
            Some(PathBuf::from(format!("/run/containers/{}/auth.json", nix::unistd::getuid())))
        }
        None => None,
    }
}

/// The auth files to look in, in order.
fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files.extend(env_path("REGISTRY_AUTH_FILE"));
    files.extend(runtime_auth_file());
    files.extend(
        env_path("XDG_CONFIG_HOME")
            .or_else(|| env_path("HOME").map(|h| h.join(".config")))
            .map(|d| d.join("containers/auth.json")),
    );
    files.extend(env_path("DOCKER_CONFIG").map(|d| d.join("config.json")));
    files.extend(env_path("HOME").map(|d| d.join(".docker/config.json")));
    files
}

/// Where `exprun login` writes: `$REGISTRY_AUTH_FILE`, else podman's auth file.
pub fn write_path() -> Option<PathBuf> {
    env_path("REGISTRY_AUTH_FILE").or_else(runtime_auth_file)
}

/// An auth file as JSON, keeping what exprun does not read; empty if missing.
fn read_json(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    let bad = |why: String| Error::Credentials { path: path.to_path_buf(), why };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| bad(format!("invalid JSON: {e}; fix or remove it"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Map::new()),
        Err(e) => Err(bad(format!("cannot read it: {e}"))),
    }
}

/// Write `json` to `path` whole or not at all, readable by the owner only;
/// its directory is made (0700) if missing.
fn write_json(path: &Path, json: &serde_json::Map<String, serde_json::Value>) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let bad = |op: &str, e: std::io::Error| Error::Credentials {
        path: path.to_path_buf(),
        why: format!("cannot {op}: {e}"),
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| bad("make its directory", e))?;
    let tmp = dir.join(format!(
        ".{}.exprun-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("auth"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let mut bytes = serde_json::to_vec_pretty(json).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad("write it", e));
    }
    Ok(())
}

/// The `auths` keys of `json` that name `key` (a registry or
/// `registry/namespace`), in any of the spellings [`normalise_key`] accepts.
fn keys_for(json: &serde_json::Map<String, serde_json::Value>, key: &str) -> Vec<String> {
    json.get("auths")
        .and_then(|a| a.as_object())
        .map(|a| a.keys().filter(|k| normalise_key(k) == normalise_key(key)).cloned().collect())
        .unwrap_or_default()
}

/// Store `c` for `key` (a registry or `registry/namespace`) in the auth file
/// at `path`, replacing what it had for that key and keeping the rest.
pub fn store(path: &Path, key: &str, c: &Credentials) -> Result<(), Error> {
    let mut json = read_json(path)?;
    let old = keys_for(&json, key);
    let auths = json.entry("auths").or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Error::Credentials {
            path: path.to_path_buf(),
            why: "\"auths\" is not an object; fix or remove it".into(),
        });
    };
    for k in old {
        auths.remove(&k);
    }
    let raw = format!("{}:{}", c.username, c.secret);
    auths.insert(
        normalise_key(key),
        serde_json::json!({"auth": base64::engine::general_purpose::STANDARD.encode(raw)}),
    );
    write_json(path, &json)
}

/// Remove what the auth file at `path` holds for `key` (every key when
/// `None`); whether there was anything.
pub fn remove(path: &Path, key: Option<&str>) -> Result<bool, Error> {
    let mut json = read_json(path)?;
    let gone = match key {
        Some(k) => keys_for(&json, k),
        None => json
            .get("auths")
            .and_then(|a| a.as_object())
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default(),
    };
    if gone.is_empty() {
        return Ok(false);
    }
    if let Some(auths) = json.get_mut("auths").and_then(|a| a.as_object_mut()) {
        for k in &gone {
            auths.remove(k);
        }
    }
    write_json(path, &json)?;
    Ok(true)
}

/// An auth file key as `host[/path]`: scheme and trailing `/v1/`-style paths
/// of Docker Hub's key dropped.
pub fn normalise_key(key: &str) -> String {
    let k = key.split_once("://").map_or(key, |(_, rest)| rest).trim_end_matches('/');
    match k.split_once('/') {
        Some(("index.docker.io" | "registry-1.docker.io" | "docker.io", _)) => DOCKER_HUB.to_string(),
        _ if matches!(k, "index.docker.io" | "registry-1.docker.io") => DOCKER_HUB.to_string(),
        _ => k.to_string(),
    }
}

/// The credentials for `r`, if any of the usual files has them.
pub fn lookup(r: &RemoteRef) -> Result<Option<Credentials>, Error> {
    lookup_in(&auth_files(), false, r)
}

/// The credentials for `r` in the first of `files` that has them; a missing
/// file is skipped, or refused when `must` (a file the caller named).
pub fn lookup_in(files: &[PathBuf], must: bool, r: &RemoteRef) -> Result<Option<Credentials>, Error> {
    for path in files {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must => continue,
            Err(e) => {
                return Err(Error::Credentials { path: path.clone(), why: format!("cannot read it: {e}") })
            }
        };
        if let Some(c) = from_bytes(&bytes, r, path)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The credentials an auth file's bytes hold for `r`.
pub(crate) fn from_bytes(bytes: &[u8], r: &RemoteRef, path: &Path) -> Result<Option<Credentials>, Error> {
    let file: AuthFile = serde_json::from_slice(bytes)
        .map_err(|e| Error::Credentials { path: path.to_path_buf(), why: format!("invalid JSON: {e}") })?;
    from_file(&file, r, path)
}

fn from_file(file: &AuthFile, r: &RemoteRef, path: &Path) -> Result<Option<Credentials>, Error> {
    let full = format!("{}/{}", r.registry, r.repository);
    // The longest matching key: `host/ns/repo`, `host/ns`, then `host`.
    let entry = file
        .auths
        .iter()
        .map(|(k, e)| (normalise_key(k), k, e))
        .filter(|(k, _, _)| *k == r.registry || full == *k || full.starts_with(&format!("{k}/")))
        .max_by_key(|(k, _, _)| k.len());
    if let Some(helper) = file.cred_helpers.get(&r.registry).or(file.creds_store.as_ref()) {
        if entry.as_ref().is_none_or(|(_, _, e)| e.auth.is_none() && e.username.is_none()) {
            return helper_get(helper, r).map(Some);
        }
    }
    let Some((_, key, e)) = entry else { return Ok(None) };
    let bad =
        |why: String| Error::Credentials { path: path.to_path_buf(), why: format!("auths.{key:?}: {why}") };
    if let Some(auth) = &e.auth {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|err| bad(format!("\"auth\" is not base64 ({err})")))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8".into()))?;
        let (u, s) =
            raw.split_once(':').ok_or_else(|| bad("\"auth\" is not base64 of USER:PASSWORD".into()))?;
        return Ok(Some(Credentials { username: u.to_string(), secret: s.to_string() }));
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials { username: u.clone(), secret: p.clone() })),
        _ => Ok(None),
    }
}

/// Ask `docker-credential-<helper> get` for the registry's credentials.
fn helper_get(helper: &str, r: &RemoteRef) -> Result<Credentials, Error> {
    let program = format!("docker-credential-{helper}");
    let server = if r.registry == DOCKER_HUB { "https://index.docker.io/v1/" } else { &r.registry };
    let fail = |why: String| Error::Credentials { path: PathBuf::from(&program), why };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!("cannot run it ({e}); install it or remove the helper from the auth file"))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "`get` for {server} failed: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let reply: Reply =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable reply: {e}")))?;
    Ok(Credentials { username: reply.username, secret: reply.secret })
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`: send the credentials with every request.
    Basic,
    /// `Bearer realm=...,service=...`: get a token from the realm.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter, if given.
        service: Option<String>,
    },
}

/// Whether a registry's credentials may go to the token service (the
/// Bearer realm) it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmTrust {
    /// The registry's own origin, or one the user listed for it
    /// (registries.conf `token-realms`): sent.
    Trusted,
    /// Another origin over HTTPS, as Docker Hub's auth.docker.io: sent, with
    /// a notice naming it.
    Notice,
    /// Another origin over plain HTTP: refused, since anyone on the path, or
    /// whoever else listens on that host and port, would get the password.
    Refused,
}

/// How far the credentials of the registry at `registry` may go to its
/// token service at `realm`, given the origins the user listed.
pub fn realm_trust(registry: &Origin, realm: &Origin, listed: &[Origin]) -> RealmTrust {
    if realm == registry || listed.contains(realm) {
        RealmTrust::Trusted
    } else if realm.is_https() {
        RealmTrust::Notice
    } else {
        RealmTrust::Refused
    }
}

/// Parse a `WWW-Authenticate` header value.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, params) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim();
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => match q.split_once('"') {
                Some((v, n)) => (v, n),
                None => (q, ""),
            },
            None => after.split_once(',').map_or((after, ""), |(v, n)| (v, n)),
        };
        match key {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = next.trim_start_matches(',');
    }
    Some(Challenge::Bearer { realm: realm?, service })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> AuthFile {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn finds_entries_by_host_and_namespace() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let f = file(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},
                "quay.io":{{"auth":"{}"}},"quay.io/lab":{{"auth":"{}"}}}}}}"#,
            b64("hub:pw1"),
            b64("q:pw2"),
            b64("lab:pw3")
        ));
        let get = |r: &str| from_file(&f, &RemoteRef::parse(r).unwrap(), Path::new("a")).unwrap();
        assert_eq!(get("python").unwrap().username, "hub");
        assert_eq!(get("quay.io/other/x").unwrap().username, "q");
        assert_eq!(get("quay.io/lab/x").unwrap().secret, "pw3");
        assert!(get("ghcr.io/x/y").is_none());
        assert_eq!(get("python").unwrap().basic(), format!("Basic {}", b64("hub:pw1")));
        assert!(!format!("{:?}", get("python").unwrap()).contains("pw1"));
    }

    #[test]
    fn a_broken_entry_names_the_file_and_key() {
        let f = file(r#"{"auths":{"ghcr.io":{"auth":"%%%"}}}"#);
        let e = from_file(&f, &RemoteRef::parse("ghcr.io/x/y").unwrap(), Path::new("/a.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/a.json") && e.contains("auths.\"ghcr.io\"") && e.contains("base64"), "{e}");
    }

    #[test]
    fn store_replaces_the_registry_and_keeps_the_rest() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/auth.json");
        let c = |u: &str| Credentials { username: u.into(), secret: "s3cret".into() };
        store(&path, "https://index.docker.io/v1/", &c("hub")).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let mut json = read_json(&path).unwrap();
        json.insert("credHelpers".into(), serde_json::json!({"gcr.io": "gcloud"}));
        json["auths"]
            .as_object_mut()
            .unwrap()
            .insert("https://index.docker.io/v1/".into(), serde_json::json!({"auth": "eDp5"}));
        write_json(&path, &json).unwrap();
        store(&path, "docker.io", &c("again")).unwrap();
        store(&path, "quay.io/lab", &c("lab")).unwrap();
        let json = read_json(&path).unwrap();
        let keys: Vec<&String> = json["auths"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["docker.io", "quay.io/lab"]);
        assert_eq!(json["credHelpers"]["gcr.io"], "gcloud");
        let got =
            from_bytes(&std::fs::read(&path).unwrap(), &RemoteRef::parse("python").unwrap(), &path).unwrap();
        assert_eq!(got.unwrap().username, "again");
        assert!(remove(&path, Some("index.docker.io")).unwrap());
        assert!(!remove(&path, Some("docker.io")).unwrap());
        assert!(remove(&path, None).unwrap());
        assert!(read_json(&path).unwrap()["auths"].as_object().unwrap().is_empty());
        std::fs::write(&path, "{not json").unwrap();
        let e = store(&path, "ghcr.io", &c("x")).unwrap_err().to_string();
        assert!(e.contains("auth.json") && e.contains("invalid JSON"), "{e}");
    }

    #[test]
    fn credentials_go_to_a_realm_of_another_origin_only_over_https_or_when_listed() {
        let o = |u: &str| Origin::of(u).unwrap();
        let plain = o("http://127.0.0.1:5000/v2/");
        let tls = o("https://registry.lab/v2/");
        assert_eq!(realm_trust(&plain, &o("http://127.0.0.1:5000/token"), &[]), RealmTrust::Trusted);
        assert_eq!(realm_trust(&plain, &o("http://127.0.0.1:5001/token"), &[]), RealmTrust::Refused);
        assert_eq!(realm_trust(&plain, &o("https://127.0.0.1:5000/token"), &[]), RealmTrust::Notice);
        assert_eq!(realm_trust(&tls, &o("https://registry.lab:443/token"), &[]), RealmTrust::Trusted);
        assert_eq!(realm_trust(&tls, &o("https://auth.lab/token"), &[]), RealmTrust::Notice);
        assert_eq!(realm_trust(&tls, &o("http://registry.lab/token"), &[]), RealmTrust::Refused);
        assert_eq!(realm_trust(&tls, &o("http://auth.lab/token"), &[]), RealmTrust::Refused);
        let listed = [o("http://auth.lab:8080")];
        assert_eq!(realm_trust(&tls, &o("http://auth.lab:8080/token"), &listed), RealmTrust::Trusted);
        assert_eq!(realm_trust(&tls, &o("http://auth.lab:8081/token"), &listed), RealmTrust::Refused);
        assert_eq!(realm_trust(&tls, &o("https://auth.lab:8080/token"), &listed), RealmTrust::Notice);
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
