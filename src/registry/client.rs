//! One repository on one registry, over the OCI distribution API (HTTP/1.1).
//!
//! ```text
//! connect   GET /v2/                         401 + WWW-Authenticate tells how to log in
//!           GET <realm>?service=&scope=      Bearer: a token for repository:<repo>:pull[,push]
//! pull      GET  /v2/<repo>/manifests/<ref>  Accept: OCI and docker index/manifest types
//!           GET  /v2/<repo>/blobs/<digest>   Range: bytes=N- to resume a partial blob
//! push      HEAD /v2/<repo>/blobs/<digest>   skip blobs the registry has
//!           POST /v2/<repo>/blobs/uploads/   202 + Location
//!           PUT  <location>&digest=<digest>  the blob, in one request
//!           PUT  /v2/<repo>/manifests/<ref>  the manifest last
//! ```
//!
//! A 401 in the middle (an expired token) gets one new token and one retry.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use ureq::http::Response;
use ureq::{Body, ResponseExt};

use super::auth::{self, Challenge, Credentials, RealmTrust};
use super::http::{Authorization, Get, Http, Origin, Pace, Timeouts, TooSlow};
use super::reference::RemoteRef;
use super::Error;
use crate::digest::{Digest, Hasher};

/// Manifests and indexes we can read, most wanted first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest or config read into memory.
const MAX_DOCUMENT: u64 = 32 << 20;
/// Consecutive failed attempts, without a byte of progress, before a download
/// gives up.
const MAX_STALLS: u32 = 5;

/// Attempts at one request that a dropped connection or a 5xx answer may
/// spoil: an upload, a manifest, a config, a blob check.
pub const MAX_ATTEMPTS: u32 = 4;

/// How to reach the registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Speak plain HTTP (the default for a registry on a loopback address).
    pub plain_http: bool,
    /// Do not check the registry's TLS certificate.
    pub insecure_tls: bool,
    /// Use these credentials instead of looking in the auth files.
    pub credentials: Option<Credentials>,
    /// Look for credentials in this auth file only (`--authfile`).
    pub auth_file: Option<std::path::PathBuf>,
    /// Speak plain HTTP when HTTPS cannot reach the registry (registries.conf's
    /// `insecure = true`).
    pub http_fallback: bool,
    /// Token services of other origins that may get the credentials even
    /// over plain HTTP (registries.conf's `token-realms`).
    pub token_realms: Vec<Origin>,
    /// How long requests may take.
    pub timeouts: Timeouts,
}

/// A client for one repository. Safe to share between download threads.
pub struct Client {
    http: Http,
    base: String,
    /// The origin of `base`: the only one that gets the Authorization header.
    origin: Origin,
    /// The reference it was made for.
    pub r: RemoteRef,
    creds: Option<Credentials>,
    challenge: Option<Challenge>,
    /// The token scopes to ask for: this repository's, then those of the
    /// repositories blobs may be mounted from.
    scopes: Vec<String>,
    token_realms: Vec<Origin>,
    authorization: Mutex<Option<String>>,
}

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// Its bytes were sent.
    Sent,
    /// The registry mounted it from another of its repositories.
    Mounted,
}

/// The registry's error document.
#[derive(Deserialize)]
struct ErrorDoc {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A manifest or index as the registry served it.
pub struct Document {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Their sha256.
    pub digest: Digest,
    /// The media type: the document's own `mediaType`, else the Content-Type.
    pub media_type: String,
}

impl Client {
    /// Connect to the registry of `r` and log in as it asks, for pulling (and
    /// pushing when `push`).
    pub fn connect(r: &RemoteRef, o: &ClientOptions, push: bool) -> Result<Self, Error> {
        Self::connect_with(r, o, push, &[])
    }

    /// As [`Client::connect`], asking also for pull access to `mount_from`,
    /// other repositories of the same registry to mount blobs from.
    pub fn connect_with(
        r: &RemoteRef,
        o: &ClientOptions,
        push: bool,
        mount_from: &[String],
    ) -> Result<Self, Error> {
        let scheme = if o.plain_http || r.is_loopback() { "http" } else { "https" };
        let base = format!("{scheme}://{}", r.api_host());
        let origin = Origin::of(&base).ok_or_else(|| Error::Reference {
            reference: r.to_string(),
            why: format!("{base} is not a URL"),
        })?;
        let mut client = Self {
            http: Http::new(&r.registry, o.insecure_tls, o.timeouts),
            base,
            origin,
            r: r.clone(),
            creds: match (&o.credentials, &o.auth_file) {
                (Some(c), _) => Some(c.clone()),
                (None, Some(file)) => auth::lookup_in(std::slice::from_ref(file), true, r)?,
                (None, None) => auth::lookup(r)?,
            },
            challenge: None,
            // A login check (no repository) asks for a token for no scope.
            scopes: std::iter::once(r.repository.as_str())
                .filter(|repo| !repo.is_empty())
                .map(|repo| format!("repository:{repo}:{}", if push { "pull,push" } else { "pull" }))
                .chain(mount_from.iter().map(|repo| format!("repository:{repo}:pull")))
                .collect(),
            token_realms: o.token_realms.clone(),
            authorization: Mutex::new(None),
        };
        let mut url = format!("{}/v2/", client.base);
        let probe =
            |url: &str| client.http.get("reach", url, &Get::default(), client.http.limits.deadline(0));
        let mut resp = probe(&url);
        if resp.is_err() && o.http_fallback && scheme == "https" {
            let base = format!("http://{}", r.api_host());
            url = format!("{base}/v2/");
            resp = probe(&url);
            if resp.is_ok() {
                client.origin = Origin::of(&base).unwrap_or(client.origin);
                client.base = base;
            }
        }
        let resp = resp?;
        match resp.status().as_u16() {
            200..=299 => {}
            401 if client.own(&resp) => {
                let h = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
                let challenge = auth::parse_challenge(h).ok_or_else(|| Error::Auth {
                    registry: r.registry.clone(),
                    why: format!("it asks for an authentication scheme exprun does not speak: {h:?}"),
                })?;
                client.check_realm(&challenge)?;
                client.challenge = Some(challenge);
                client.login()?;
            }
            _ => return Err(client.status("reach", &url, resp)),
        }
        Ok(client)
    }

    /// Log in to `registry` with `o.credentials` and check that the registry
    /// takes them, as `podman login` does: a token from the token service for
    /// no repository, then `GET /v2/` with it. Whether the registry asked for
    /// credentials at all. The token services registries.conf lists for the
    /// registry are added to `o`'s.
    pub fn check_login(registry: &str, o: &ClientOptions) -> Result<bool, Error> {
        let mut o = o.clone();
        o.token_realms.extend(super::conf::RegistriesConf::load()?.token_realms(registry));
        let r =
            RemoteRef { registry: registry.to_string(), repository: String::new(), tag: None, digest: None };
        let client = Self::connect(&r, &o, false)?;
        if client.challenge.is_none() {
            return Ok(false);
        }
        let url = format!("{}/v2/", client.base);
        let get = |a: Option<&str>| client.get("log in at", &url, a, Vec::new());
        let resp = client.call(&get)?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            _ => Err(client.status("log in at", &url, resp)),
        }
    }

    /// Refuse a token service that would get the credentials over plain HTTP
    /// on another origin; name one on another origin over HTTPS on stderr.
    fn check_realm(&self, challenge: &Challenge) -> Result<(), Error> {
        let (Challenge::Bearer { realm, .. }, Some(c)) = (challenge, &self.creds) else { return Ok(()) };
        let to = Origin::of(realm).ok_or_else(|| Error::Auth {
            registry: self.r.registry.clone(),
            why: format!("its token service {realm:?} is not an http:// or https:// URL"),
        })?;
        match auth::realm_trust(&self.origin, &to, &self.token_realms) {
            RealmTrust::Trusted => Ok(()),
            RealmTrust::Notice => {
                eprintln!(
                    "exprun: registry {} sends user {:?} to its token service at {}, another host or port, \
                     over HTTPS",
                    self.r.registry, c.username, to
                );
                Ok(())
            }
            RealmTrust::Refused => Err(Error::Auth {
                registry: self.r.registry.clone(),
                why: format!(
                    "its token service {realm} is on another origin ({to}, not {}) over plain HTTP, where \
                     the password of user {:?} could be read or taken by whoever listens there; it was not \
                     sent. If that service is the registry's own, list it for the registry in \
                     registries.conf: token-realms = [\"{to}\"] under its [[registry]]",
                    self.origin, c.username
                ),
            }),
        }
    }

    /// Whether an answer came from the registry's own origin (after any
    /// redirects): only then does a 401 ask for the registry's credentials.
    fn own(&self, resp: &Response<Body>) -> bool {
        Origin::of(&resp.get_uri().to_string()).is_some_and(|o| o == self.origin)
    }

    /// Get the Authorization header the challenge asks for.
    fn login(&self) -> Result<(), Error> {
        let header = match &self.challenge {
            None => return Ok(()),
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => c.basic(),
                None => return Err(self.no_credentials()),
            },
            Some(Challenge::Bearer { realm, service }) => self.token(realm, service.as_deref())?,
        };
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(header);
        Ok(())
    }

    fn no_credentials(&self) -> Error {
        Error::Auth {
            registry: self.r.registry.clone(),
            why: "it wants credentials and none were found; log in with `podman login` or `docker login`, \
                  or point $REGISTRY_AUTH_FILE at an auth.json"
                .into(),
        }
    }

    /// A bearer token from the realm (anonymous when there are no
    /// credentials); [`Client::check_realm`] has allowed the credentials to
    /// go there.
    fn token(&self, realm: &str, service: Option<&str>) -> Result<String, Error> {
        let to = Origin::of(realm).ok_or_else(|| Error::Auth {
            registry: self.r.registry.clone(),
            why: format!("its token service {realm:?} is not an http:// or https:// URL"),
        })?;
        let basic = self.creds.as_ref().map(Credentials::basic);
        let mut query: Vec<(&str, &str)> = self.scopes.iter().map(|s| ("scope", s.as_str())).collect();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let req = Get {
            query,
            auth: basic.as_deref().map(|value| Authorization { origin: &to, value }),
            ..Get::default()
        };
        let mut resp = self.http.get("get a token from", realm, &req, self.http.limits.deadline(0))?;
        match resp.status().as_u16() {
            200..=299 => {}
            401 | 403 => {
                return Err(Error::Auth {
                    registry: self.r.registry.clone(),
                    why: match &self.creds {
                        Some(c) => {
                            format!("the token service refused user {:?}; check the password", c.username)
                        }
                        None => "the token service wants credentials; log in with `podman login` or \
                                 `docker login`"
                            .into(),
                    },
                });
            }
            _ => return Err(self.status("get a token from", realm, resp)),
        }
        #[derive(Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.http.error("read a token from", realm, e))?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| Error::Auth {
            registry: self.r.registry.clone(),
            why: format!("{realm} answered with no token JSON: {e}"),
        })?;
        let t = t.token.or(t.access_token).ok_or_else(|| Error::Auth {
            registry: self.r.registry.clone(),
            why: format!("{realm} answered without a token"),
        })?;
        Ok(format!("Bearer {t}"))
    }

    fn auth_header(&self) -> Option<String> {
        self.authorization.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The Authorization header `value`, for the registry's own origin only.
    fn authorization<'a>(&'a self, value: Option<&'a str>) -> Option<Authorization<'a>> {
        value.map(|value| Authorization { origin: &self.origin, value })
    }

    /// GET `url` (of this registry, or where it redirects) with `headers`, and
    /// the Authorization header `auth` where it belongs; a document's
    /// deadline.
    fn get(
        &self,
        op: &str,
        url: &str,
        auth: Option<&str>,
        headers: Vec<(&'static str, String)>,
    ) -> Result<Response<Body>, Error> {
        let req = Get { headers, auth: self.authorization(auth), ..Get::default() };
        self.http.get(op, url, &req, self.http.limits.deadline(0))
    }

    /// Make a request (built by `make`, given the Authorization header); on a
    /// 401 from the registry itself, log in again and retry once.
    fn call(&self, make: &MakeRequest<'_>) -> Result<Response<Body>, Error> {
        let resp = make(self.auth_header().as_deref())?;
        if resp.status().as_u16() != 401 || !self.own(&resp) {
            return Ok(resp);
        }
        if self.challenge.is_none() {
            return Err(self.no_credentials());
        }
        self.login()?;
        let resp = make(self.auth_header().as_deref())?;
        if resp.status().as_u16() == 401 && self.own(&resp) {
            return Err(match &self.creds {
                None => self.no_credentials(),
                Some(c) => Error::Auth {
                    registry: self.r.registry.clone(),
                    why: format!("user {:?} was refused; check the password", c.username),
                },
            });
        }
        Ok(resp)
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.r.repository)
    }

    /// GET a manifest or index by tag or digest, and check its digest: against
    /// the reference when it is one, and against the registry's
    /// Docker-Content-Digest header.
    pub fn manifest(&self, reference: &str) -> Result<Document, Error> {
        retried(|| self.manifest_once(reference))
    }

    fn manifest_once(&self, reference: &str) -> Result<Document, Error> {
        let url = self.url("manifests", reference);
        let get =
            |a: Option<&str>| self.get("get the manifest", &url, a, vec![("Accept", MANIFEST_ACCEPT.into())]);
        let mut resp = self.call(&get)?;
        let what = format!("manifest {}/{}:{reference}", self.r.registry, self.r.repository);
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(Error::NotFound { registry: self.r.registry.clone(), what }),
            _ => return Err(self.status("get", &url, resp)),
        }
        let header_digest = header(&resp, "docker-content-digest");
        let content_type = header(&resp, "content-type").unwrap_or_default();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT)
            .read_to_vec()
            .map_err(|e| self.http.error("read", &url, e))?;
        let digest = Digest::of_bytes(&bytes);
        let expected = reference.parse::<Digest>().ok().or_else(|| {
            header_digest.filter(|h| h.starts_with("sha256:")).and_then(|h| h.parse::<Digest>().ok())
        });
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(Error::DigestMismatch { what, expected, found: digest });
        }
        #[derive(Deserialize)]
        struct Typed {
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
        }
        let typed: Typed = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid { what: what.clone(), why: format!("invalid JSON: {e}") })?;
        let media_type = typed
            .media_type
            .unwrap_or_else(|| content_type.split(';').next().unwrap_or("").trim().to_string());
        Ok(Document { bytes, digest, media_type })
    }

    /// A small blob (a config), verified.
    pub fn small_blob(&self, d: &Digest, size: u64) -> Result<Vec<u8>, Error> {
        retried(|| self.small_blob_once(d, size))
    }

    fn small_blob_once(&self, d: &Digest, size: u64) -> Result<Vec<u8>, Error> {
        let what = format!("blob {d} of {}/{}", self.r.registry, self.r.repository);
        if size > MAX_DOCUMENT {
            return Err(Error::Invalid {
                what,
                why: format!("{size} bytes is over the {MAX_DOCUMENT}-byte limit"),
            });
        }
        let url = self.url("blobs", &d.to_string());
        let deadline = self.http.limits.deadline(size);
        let get = |a: Option<&str>| {
            let req = Get { auth: self.authorization(a), ..Get::default() };
            self.http.get("get", &url, &req, deadline)
        };
        let mut resp = self.call(&get)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(Error::NotFound { registry: self.r.registry.clone(), what }),
            _ => return Err(self.status("get", &url, resp)),
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(size + 1)
            .read_to_vec()
            .map_err(|e| self.http.error("read", &url, e))?;
        let found = Digest::of_bytes(&bytes);
        if bytes.len() as u64 != size || &found != d {
            return Err(Error::DigestMismatch { what, expected: d.clone(), found });
        }
        Ok(bytes)
    }

    /// Download blob `d` into `path`, going on from what `path` already holds;
    /// on a dropped connection, retry from where it stopped. `progress` gets the
    /// bytes already there first, then each chunk. The file is fsync'd and its
    /// content verified (length and sha256) before this returns; content that
    /// does not match is deleted. The download as a whole, all its attempts,
    /// keeps the minimum rate ([`Pace`]).
    pub fn download(&self, d: &Digest, size: u64, path: &Path, progress: &dyn Fn(u64)) -> Result<(), Error> {
        let what = format!("blob {d} of {}/{}", self.r.registry, self.r.repository);
        let io_err =
            |op: &'static str| move |e: std::io::Error| Error::Io { op, path: path.to_path_buf(), source: e };
        // A complete partial may be linked into a store already, by a pull that
        // ran at the same time (and be read-only): it is only read.
        let complete = std::fs::metadata(path).is_ok_and(|m| m.len() == size);
        let mut file = if complete {
            File::open(path)
        } else {
            OpenOptions::new().read(true).append(true).create(true).open(path)
        }
        .map_err(io_err("open"))?;
        let mut hasher = Hasher::new();
        let have = resume_point(&mut file, &mut hasher, size).map_err(io_err("read"))?;
        progress(have);
        let url = self.url("blobs", &d.to_string());
        let pace = Pace::new(self.http.limits);
        let mut sink = Sink { file, hasher, have, size, what: &what, pace, deadline: None, progress };
        sink.deadline = sink.pace.deadline(size);
        let mut stalls = 0;
        while sink.have < size {
            if let Some(why) = sink.pace.too_slow() {
                return Err(self.http.timeout("get", &url, why));
            }
            let before = sink.have;
            match self.download_once(&url, &mut sink) {
                Ok(()) => {}
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    stalls = if sink.have > before { 0 } else { stalls + 1 };
                    if stalls >= MAX_STALLS {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(200 << stalls.min(5)));
                }
            }
        }
        sink.file.sync_all().map_err(io_err("write"))?;
        let (found, _) = sink.hasher.finish();
        if &found != d {
            let _ = std::fs::remove_file(path);
            return Err(Error::DigestMismatch { what, expected: d.clone(), found });
        }
        Ok(())
    }

    /// One GET of the rest of a blob.
    fn download_once(&self, url: &str, sink: &mut Sink<'_>) -> Result<(), Attempt> {
        let what = sink.what;
        let mut headers = Vec::new();
        if sink.have > 0 {
            headers.push(("Range", format!("bytes={}-", sink.have)));
        }
        let get = |a: Option<&str>| {
            let req = Get { headers: headers.clone(), auth: self.authorization(a), ..Get::default() };
            self.http.get("get", url, &req, sink.deadline)
        };
        let resp = match self.call(&get) {
            Ok(r) => r,
            Err(e @ Error::Transport { .. }) => return Err(Attempt::Retry(e)),
            Err(e) => return Err(Attempt::Fatal(e)),
        };
        let io_fatal =
            |e: std::io::Error| Attempt::Fatal(Error::Io { op: "write", path: what.into(), source: e });
        match resp.status().as_u16() {
            200 if sink.have > 0 => sink.restart().map_err(io_fatal)?, // no range support
            200 => {}
            206 => {
                let start = header(&resp, "content-range")
                    .and_then(|v| v.strip_prefix("bytes ")?.split('-').next()?.parse::<u64>().ok());
                if start != Some(sink.have) {
                    sink.restart().map_err(io_fatal)?;
                    return Err(Attempt::Retry(Error::Invalid {
                        what: what.into(),
                        why: "the registry answered a range request with another range".into(),
                    }));
                }
            }
            416 => {
                sink.restart().map_err(io_fatal)?;
                return Err(Attempt::Retry(self.status("get", url, resp)));
            }
            404 => {
                return Err(Attempt::Fatal(Error::NotFound {
                    registry: self.r.registry.clone(),
                    what: what.into(),
                }))
            }
            500..=599 => return Err(Attempt::Retry(self.status("get", url, resp))),
            _ => return Err(Attempt::Fatal(self.status("get", url, resp))),
        }
        let mut body = resp.into_body();
        let mut reader = body.with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 1 << 17];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    if let Some(why) = sink.pace.too_slow() {
                        return Err(Attempt::Fatal(self.http.timeout("read", url, why)));
                    }
                    return Err(match self.http.body_error("read", url, e) {
                        e @ Error::Timeout { .. } => Attempt::Fatal(e),
                        e => Attempt::Retry(e),
                    });
                }
            };
            if sink.have + n as u64 > sink.size {
                return Err(Attempt::Fatal(Error::Invalid {
                    what: what.into(),
                    why: format!("the registry sent more than the {} bytes the manifest declares", sink.size),
                }));
            }
            sink.write(&buf[..n]).map_err(io_fatal)?;
            if let Some(why) = sink.pace.too_slow() {
                return Err(Attempt::Fatal(self.http.timeout("read", url, why)));
            }
        }
        if sink.have < sink.size {
            return Err(Attempt::Retry(Error::Transport {
                registry: self.r.registry.clone(),
                op: format!("read {url}"),
                why: format!("the connection ended after {} of {} bytes", sink.have, sink.size),
            }));
        }
        Ok(())
    }

    /// Whether the repository has blob `d`.
    pub fn has_blob(&self, d: &Digest) -> Result<bool, Error> {
        retried(|| self.has_blob_once(d))
    }

    fn has_blob_once(&self, d: &Digest) -> Result<bool, Error> {
        let url = self.url("blobs", &d.to_string());
        let head = |a: Option<&str>| {
            let req = Get { head: true, auth: self.authorization(a), ..Get::default() };
            self.http.get("check", &url, &req, self.http.limits.deadline(0))
        };
        let resp = self.call(&head)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status("check", &url, resp)),
        }
    }

    /// Upload the file at `path` as blob `d`, in one PUT; `progress` gets the
    /// bytes sent so far. With `mount_from`, another repository of this
    /// registry that has the blob, the registry is asked to mount it from there
    /// first; one that cannot starts an ordinary upload instead. A registry
    /// cannot resume a monolithic upload, so a dropped connection or a 5xx
    /// answer starts it over, up to [`MAX_ATTEMPTS`] attempts in all.
    pub fn upload(
        &self,
        d: &Digest,
        path: &Path,
        mount_from: Option<&str>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded, Error> {
        let mut attempt = 1;
        loop {
            match self.upload_once(d, path, mount_from, progress) {
                Ok(u) => return Ok(u),
                Err(Attempt::Retry(_)) if attempt < MAX_ATTEMPTS => {
                    std::thread::sleep(Duration::from_millis(250 << attempt));
                    attempt += 1;
                }
                Err(Attempt::Retry(e) | Attempt::Fatal(e)) => return Err(e),
            }
        }
    }

    /// One upload: start a session, PUT the whole file to it.
    fn upload_once(
        &self,
        d: &Digest,
        path: &Path,
        mount_from: Option<&str>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded, Attempt> {
        let retry_or_fatal = |e: Error| match &e {
            Error::Transport { .. } => Attempt::Retry(e),
            Error::Status { status: 500..=599, .. } => Attempt::Retry(e),
            _ => Attempt::Fatal(e),
        };
        let mut start = format!("{}/v2/{}/blobs/uploads/", self.base, self.r.repository);
        if let Some(from) = mount_from {
            start.push_str(&format!("?mount={d}&from={from}"));
        }
        let post = |a: Option<&str>| {
            let op = "start an upload at";
            let req = self.http.post(op, &start, self.authorization(a), self.http.limits.deadline(0))?;
            req.send_empty().map_err(|e| self.http.error(op, &start, e))
        };
        let resp = self.call(&post).map_err(retry_or_fatal)?;
        match resp.status().as_u16() {
            201 if mount_from.is_some() => return Ok(Uploaded::Mounted),
            202 => {}
            _ => return Err(retry_or_fatal(self.status("start an upload at", &start, resp))),
        }
        let location = header(&resp, "location").ok_or_else(|| {
            Attempt::Fatal(Error::Invalid {
                what: start.clone(),
                why: "the registry started an upload without a Location".into(),
            })
        })?;
        let location = if location.starts_with('/') { format!("{}{location}", self.base) } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={d}");
        let put = |a: Option<&str>| {
            let op = "upload to";
            let io = |e| Error::Io { op: "read", path: path.to_path_buf(), source: e };
            let file = File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            progress(0);
            let pace = Pace::new(self.http.limits);
            let deadline = pace.deadline(len);
            let mut body = Counted { inner: file, sent: 0, progress, pace };
            self.http
                .put(op, &url, self.authorization(a), deadline)?
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", len)
                .send(ureq::SendBody::from_reader(&mut body))
                .map_err(|e| self.http.error(op, &url, e))
        };
        let resp = self.call(&put).map_err(retry_or_fatal)?;
        if resp.status().as_u16() != 201 {
            return Err(retry_or_fatal(self.status("upload to", &url, resp)));
        }
        Ok(Uploaded::Sent)
    }

    /// PUT a manifest under `reference` (a tag or its digest); returns the
    /// digest the registry gives it, checked against ours.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest, Error> {
        let url = self.url("manifests", reference);
        let put = |a: Option<&str>| {
            let op = "put the manifest to";
            let deadline = self.http.limits.deadline(bytes.len() as u64);
            self.http
                .put(op, &url, self.authorization(a), deadline)?
                .header("Content-Type", media_type)
                .send(bytes)
                .map_err(|e| self.http.error(op, &url, e))
        };
        let resp = self.call(&put)?;
        if resp.status().as_u16() != 201 {
            return Err(self.status("put the manifest to", &url, resp));
        }
        let ours = Digest::of_bytes(bytes);
        if let Some(theirs) = header(&resp, "docker-content-digest").and_then(|h| h.parse::<Digest>().ok()) {
            if theirs != ours {
                return Err(Error::DigestMismatch {
                    what: format!("manifest pushed to {url}"),
                    expected: ours,
                    found: theirs,
                });
            }
        }
        Ok(ours)
    }

    /// An unexpected status, with the registry's own error messages.
    fn status(&self, op: &str, url: &str, mut resp: Response<Body>) -> Error {
        let status = resp.status().as_u16();
        let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
        let message = serde_json::from_slice::<ErrorDoc>(&body)
            .ok()
            .filter(|d| !d.errors.is_empty())
            .map(|d| {
                d.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; ")
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().chars().take(200).collect());
        Error::Status { registry: self.r.registry.clone(), op: format!("{op} {url}"), status, message }
    }
}

/// Makes one request, given the Authorization header to send.
type MakeRequest<'a> = dyn Fn(Option<&str>) -> Result<Response<Body>, Error> + 'a;

/// Where a download goes, and how it is going.
struct Sink<'a> {
    file: File,
    hasher: Hasher,
    /// Bytes in the file.
    have: u64,
    /// Bytes the blob has.
    size: u64,
    /// The blob, for errors.
    what: &'a str,
    pace: Pace,
    /// When the minimum rate fails the download whatever comes: the overall
    /// limit of each attempt.
    deadline: Option<Instant>,
    progress: &'a dyn Fn(u64),
}

impl Sink<'_> {
    /// Start again from the blob's first byte.
    fn restart(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.hasher = Hasher::new();
        self.have = 0;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.have += bytes.len() as u64;
        self.pace.add(bytes.len() as u64);
        (self.progress)(bytes.len() as u64);
        Ok(())
    }
}

/// Why one download attempt ended.
enum Attempt {
    /// The connection failed or ended early: try again from where it stopped.
    Retry(Error),
    /// Nothing to gain from trying again.
    Fatal(Error),
}

/// `request` (a GET or HEAD) again after a dropped connection or a 5xx
/// answer, up to [`MAX_ATTEMPTS`] attempts in all, waiting 0.5, 1, 2 s between.
/// A 429 is not retried: registries rate-limit for hours.
fn retried<T>(request: impl Fn() -> Result<T, Error>) -> Result<T, Error> {
    let mut attempt = 1;
    loop {
        match request() {
            Err(Error::Transport { .. } | Error::Status { status: 500..=599, .. })
                if attempt < MAX_ATTEMPTS =>
            {
                std::thread::sleep(Duration::from_millis(250 << attempt));
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A reader that reports the bytes read so far, and fails once the upload
/// is under the minimum rate.
struct Counted<'a, R> {
    inner: R,
    sent: u64,
    progress: &'a (dyn Fn(u64) + Sync),
    pace: Pace,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(why) = self.pace.too_slow() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, TooSlow(why)));
        }
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        self.pace.add(n as u64);
        (self.progress)(self.sent);
        Ok(n)
    }
}

/// How much of a partial blob to keep (all of it unless longer than the blob),
/// with the hasher fed with it.
fn resume_point(file: &mut File, hasher: &mut Hasher, size: u64) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len > size {
        file.set_len(0)?;
        return Ok(0);
    }
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 17];
    let mut reader = (&*file).take(len);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(len)
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}
