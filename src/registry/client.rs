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
//! Requests go through [`super::http`]: the Authorization header only to the
//! registry's own origin, redirects one hop at a time, deadlines. The token
//! service gets the credentials as [`auth::realm_trust`] allows. Blob
//! downloads and uploads are in `blobs.rs`.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use ureq::http::Response;
use ureq::{Body, ResponseExt};

use super::auth::{self, Challenge, Credentials, RealmTrust};
use super::http::{Authorization, Get, Http, Origin, Pace, Timeouts};
use super::Error;
use crate::digest::Digest;
use crate::image::reference::RemoteRef;

mod blobs;

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
                let notice = format!(
                    "exprun: registry {} sends user {:?} to its token service at {}, another host or port, \
                     over HTTPS",
                    self.r.registry, c.username, to
                );
                eprintln!("{}", crate::record::for_terminal(&notice));
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

    /// A small blob (a config), verified; read under the minimum rate.
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
        let mut pace = Pace::new(self.http.limits);
        let deadline = pace.deadline(size);
        let get = |a: Option<&str>| {
            let req = Get { auth: self.authorization(a), ..Get::default() };
            self.http.get("get", &url, &req, deadline)
        };
        let resp = self.call(&get)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(Error::NotFound { registry: self.r.registry.clone(), what }),
            _ => return Err(self.status("get", &url, resp)),
        }
        let bytes = self.http.read_paced("read", &url, resp, size + 1, &mut pace)?;
        let found = Digest::of_bytes(&bytes);
        if bytes.len() as u64 != size || &found != d {
            return Err(Error::DigestMismatch { what, expected: d.clone(), found });
        }
        Ok(bytes)
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
        let body = self.http.error_body(&mut resp);
        let message = serde_json::from_slice::<ErrorDoc>(&body)
            .ok()
            .filter(|d| !d.errors.is_empty())
            .map(|d| {
                d.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; ")
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().chars().take(200).collect());
        let at = resp.get_uri().to_string();
        let path = |u: &str| u.split('?').next().unwrap_or("").to_string();
        let op = match path(&at) == path(url) {
            true => format!("{op} {url}"),
            false => format!("{op} {url} (answered by {at}, where it was redirected)"),
        };
        let message = match (status, self.own(&resp)) {
            (401, false) => format!(
                "{message} (exprun sends the registry's credentials to its own origin, {}, only)",
                self.origin
            ),
            _ => message,
        };
        Error::Status { registry: self.r.registry.clone(), op, status, message }
    }
}

/// Makes one request, given the Authorization header to send.
type MakeRequest<'a> = dyn Fn(Option<&str>) -> Result<Response<Body>, Error> + 'a;

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

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}
