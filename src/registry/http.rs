//! Requests to a registry: which origin a credential may go to, redirects
//! followed one hop at a time, and a deadline on every request.
//!
//! An origin is a scheme, a host and a port (`http://127.0.0.1:5000`). A
//! registry's credentials (its Basic password or the Bearer token got with
//! it) go only to the registry's own origin: ureq's same-host rule for
//! redirects ignores the port and lets plain HTTP through, so ureq follows no
//! redirect here. Each hop is a request of its own, which carries the
//! Authorization header only when its origin is the one the header belongs
//! to; a redirect to a scheme other than HTTP(S), or from HTTPS to HTTP, is
//! refused, and so is an eleventh redirect.
//!
//! Deadlines ([`Timeouts`]): connecting takes at most 30 s (`timeout` when
//! that is less), getting the answer's headers at most `timeout`, a
//! manifest, index or token must arrive whole within `timeout` of the
//! request, and no transfer may go `timeout` without a byte. A blob transfer (a layer, a config, an upload) may last longer, as
//! long as it keeps going: once `timeout` has passed since it started, it
//! must have moved at least `min_rate` bytes a second on average ([`Pace`]);
//! a server that trickles a byte a second fails it after `timeout`, whatever
//! size the manifest claims. A deadline that passes is not retried.

use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::{Body, ResponseExt};

use super::Error;

/// Redirects followed for one request.
pub const MAX_REDIRECTS: u32 = 10;
/// The longest a connection may take to open (less when `timeout` is), so
/// that a mirror that drops packets costs no more than before.
const MAX_CONNECT: Duration = Duration::from_secs(30);

/// Where a request goes: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lower case.
    pub host: String,
    /// The port, the scheme's default when the URL gives none.
    pub port: u16,
}

impl Origin {
    /// The origin of an `http://` or `https://` URL; `None` for any other.
    pub fn of(url: &str) -> Option<Self> {
        let uri: ureq::http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = uri.authority()?;
        if authority.host().is_empty() {
            return None;
        }
        Some(Self {
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(default),
            scheme,
        })
    }

    /// Whether it is HTTPS.
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// `location` (a redirect's `Location`) as an absolute URL, relative to `base`.
pub fn resolve(base: &str, location: &str) -> String {
    let location = location.trim();
    let has_scheme = location.split_once(':').is_some_and(|(s, _)| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if has_scheme {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    if let Some(authority_and_path) = location.strip_prefix("//") {
        return format!("{scheme}://{authority_and_path}");
    }
    let path_at = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..path_at];
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest[path_at..].split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{scheme}://{authority}{dir}{location}")
}

/// How long registry requests may take; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting, the answer's headers, a whole document, and the longest a
    /// transfer may go without a byte.
    pub timeout: Duration,
    /// Bytes a second a blob transfer must average once `timeout` has
    /// passed; 0 for no minimum.
    pub min_rate: u64,
}

/// The default `timeout`: one minute.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default `min_rate`: 16 KiB/s, so that three downloads at once still
/// pass on a 400 kbit/s line.
pub const DEFAULT_MIN_RATE: u64 = 16 << 10;

impl Default for Timeouts {
    fn default() -> Self {
        Self { timeout: DEFAULT_TIMEOUT, min_rate: DEFAULT_MIN_RATE }
    }
}

impl Timeouts {
    /// The latest a request may finish that moves `bytes` bytes of body,
    /// started now; `None` (no overall limit) when there is no minimum rate
    /// and there is a body to move.
    pub fn deadline(&self, bytes: u64) -> Option<Instant> {
        let extra = match (bytes, self.min_rate) {
            (0, _) => Duration::ZERO,
            (_, 0) => return None,
            (b, rate) => Duration::from_secs(b / rate + 1),
        };
        Some(Instant::now() + self.timeout + extra)
    }

    /// What the limits are and how to change them, for errors.
    fn describe(&self) -> String {
        format!(
            "the limits are {} s to connect and answer (--registry-timeout or $EXPRUN_REGISTRY_TIMEOUT) \
             and {} for a transfer after that (--registry-min-rate or $EXPRUN_REGISTRY_MIN_RATE); \
             raise or lower them if the registry is only slow",
            self.timeout.as_secs(),
            rate(self.min_rate)
        )
    }
}

/// A rate as people read it.
fn rate(bytes_per_s: u64) -> String {
    match bytes_per_s {
        0 => "no minimum rate".into(),
        r if r % (1 << 20) == 0 => format!("at least {} MiB/s", r >> 20),
        r if r % (1 << 10) == 0 => format!("at least {} KiB/s", r >> 10),
        r => format!("at least {r} B/s"),
    }
}

/// The minimum-rate rule of one blob transfer, across all its attempts.
#[derive(Debug, Clone)]
pub struct Pace {
    start: Instant,
    moved: u64,
    limits: Timeouts,
}

impl Pace {
    /// A transfer starting now.
    pub fn new(limits: Timeouts) -> Self {
        Self { start: Instant::now(), moved: 0, limits }
    }

    /// `n` more bytes moved.
    pub fn add(&mut self, n: u64) {
        self.moved += n;
    }

    /// Why the transfer is too slow to go on, if it is: `timeout` has passed
    /// and it averaged less than `min_rate` since.
    pub fn too_slow(&self) -> Option<String> {
        let elapsed = self.start.elapsed();
        let after = elapsed.checked_sub(self.limits.timeout)?;
        if self.limits.min_rate == 0 || self.moved as f64 >= after.as_secs_f64() * self.limits.min_rate as f64
        {
            return None;
        }
        Some(format!(
            "{} bytes in {:.1} s is too slow: after the first {} s a transfer must keep {}",
            self.moved,
            elapsed.as_secs_f64(),
            self.limits.timeout.as_secs(),
            rate(self.limits.min_rate)
        ))
    }

    /// The latest the transfer can go on, once `total` bytes are all it may
    /// move: the rule fails it by then whatever comes.
    pub fn deadline(&self, total: u64) -> Option<Instant> {
        match self.limits.min_rate {
            0 => None,
            r => Some(self.start + self.limits.timeout + Duration::from_secs(total / r + 1)),
        }
    }
}

/// The error a [`Pace`] gives inside a request body's reader, found again in
/// the request's error by [`Http::error`].
#[derive(Debug)]
pub struct TooSlow(pub String);

impl fmt::Display for TooSlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooSlow {}

/// An Authorization header and the only origin it may go to.
#[derive(Debug, Clone, Copy)]
pub struct Authorization<'a> {
    /// Where it belongs.
    pub origin: &'a Origin,
    /// The header's value.
    pub value: &'a str,
}

/// A GET or HEAD, as each hop of its redirects repeats it.
#[derive(Default)]
pub struct Get<'a> {
    /// HEAD instead of GET.
    pub head: bool,
    /// Query parameters of the first URL (a redirect's own URL has its own).
    pub query: Vec<(&'a str, &'a str)>,
    /// Headers for every hop.
    pub headers: Vec<(&'static str, String)>,
    /// The Authorization header, for hops to its origin only.
    pub auth: Option<Authorization<'a>>,
}

/// The agent, with the registry's name and the limits, for errors.
pub struct Http {
    agent: ureq::Agent,
    registry: String,
    /// The limits every request gets.
    pub limits: Timeouts,
}

impl Http {
    /// An agent that follows no redirect itself and checks TLS certificates
    /// against the system's trust store, unless `insecure_tls`.
    pub fn new(registry: &str, insecure_tls: bool, limits: Timeouts) -> Self {
        let mut tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier);
        if insecure_tls {
            tls = tls.disable_verification(true);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .max_redirects(0)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            .timeout_resolve(Some(limits.timeout.min(MAX_CONNECT)))
            .timeout_connect(Some(limits.timeout.min(MAX_CONNECT)))
            .timeout_send_request(Some(limits.timeout))
            .timeout_recv_response(Some(limits.timeout))
            .timeout_per_read(Some(limits.timeout))
            .timeout_per_write(Some(limits.timeout))
            .user_agent(concat!("exprun/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent, registry: registry.to_string(), limits }
    }

    /// GET (or HEAD) `url` as `req` says, following redirects one hop at a
    /// time; done by `deadline`, headers and body, when there is one. The
    /// first answer that is not a redirect (its URL is its `get_uri()`).
    pub fn get(
        &self,
        op: &str,
        url: &str,
        req: &Get<'_>,
        deadline: Option<Instant>,
    ) -> Result<Response<Body>, Error> {
        let mut url = url.to_string();
        for hop in 0..=MAX_REDIRECTS {
            let origin = Origin::of(&url).ok_or_else(|| Error::Redirect {
                registry: self.registry.clone(),
                op: op.to_string(),
                why: format!("{url:?} is not an http:// or https:// URL; refused"),
            })?;
            let mut b = if req.head { self.agent.head(&url) } else { self.agent.get(&url) };
            if hop == 0 {
                for (k, v) in &req.query {
                    b = b.query(*k, *v);
                }
            }
            for (k, v) in &req.headers {
                b = b.header(*k, v);
            }
            let b = self.prepare(op, &url, &origin, b, req.auth, deadline)?;
            let resp = b.call().map_err(|e| self.error(op, &url, e))?;
            if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(resp);
            }
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else {
                return Ok(resp);
            };
            let next = resolve(&resp.get_uri().to_string(), location);
            let next_origin = Origin::of(&next).ok_or_else(|| Error::Redirect {
                registry: self.registry.clone(),
                op: format!("{op} {url}"),
                why: format!("it redirects to {next:?}, which is not an http:// or https:// URL; refused"),
            })?;
            if origin.is_https() && !next_origin.is_https() {
                return Err(Error::Redirect {
                    registry: self.registry.clone(),
                    op: format!("{op} {url}"),
                    why: format!("it redirects from HTTPS to plain HTTP ({next}); refused"),
                });
            }
            url = next;
        }
        Err(Error::Redirect {
            registry: self.registry.clone(),
            op: format!("{op} {url}"),
            why: format!("more than {MAX_REDIRECTS} redirects; refused"),
        })
    }

    /// A POST to `url`.
    pub fn post(
        &self,
        op: &str,
        url: &str,
        auth: Option<Authorization<'_>>,
        deadline: Option<Instant>,
    ) -> Result<ureq::RequestBuilder<ureq::typestate::WithBody>, Error> {
        self.with_body(op, url, self.agent.post(url), auth, deadline)
    }

    /// A PUT to `url`.
    pub fn put(
        &self,
        op: &str,
        url: &str,
        auth: Option<Authorization<'_>>,
        deadline: Option<Instant>,
    ) -> Result<ureq::RequestBuilder<ureq::typestate::WithBody>, Error> {
        self.with_body(op, url, self.agent.put(url), auth, deadline)
    }

    fn with_body(
        &self,
        op: &str,
        url: &str,
        b: ureq::RequestBuilder<ureq::typestate::WithBody>,
        auth: Option<Authorization<'_>>,
        deadline: Option<Instant>,
    ) -> Result<ureq::RequestBuilder<ureq::typestate::WithBody>, Error> {
        let origin = Origin::of(url).ok_or_else(|| Error::Redirect {
            registry: self.registry.clone(),
            op: op.to_string(),
            why: format!("{url:?} is not an http:// or https:// URL; refused"),
        })?;
        self.prepare(op, url, &origin, b, auth, deadline)
    }

    /// `b` with the Authorization header when `origin` is its own, and the
    /// time left until `deadline` as its overall limit.
    fn prepare<B>(
        &self,
        op: &str,
        url: &str,
        origin: &Origin,
        mut b: ureq::RequestBuilder<B>,
        auth: Option<Authorization<'_>>,
        deadline: Option<Instant>,
    ) -> Result<ureq::RequestBuilder<B>, Error> {
        if let Some(a) = auth.filter(|a| a.origin == origin) {
            b = b.header("Authorization", a.value);
        }
        let Some(deadline) = deadline else { return Ok(b) };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timeout(op, url, "the time for it ran out".into()));
        }
        Ok(b.config().timeout_global(Some(left)).build())
    }

    /// A failed request as an error: [`Error::Timeout`] when a limit passed.
    pub fn error(&self, op: &str, url: &str, e: ureq::Error) -> Error {
        if let ureq::Error::Timeout(which) = &e {
            let t = self.limits.timeout.as_secs();
            let why = match which {
                ureq::Timeout::Resolve | ureq::Timeout::Connect => {
                    format!("could not connect within {} s", self.limits.timeout.min(MAX_CONNECT).as_secs())
                }
                ureq::Timeout::RecvResponse => format!("no answer within {t} s"),
                ureq::Timeout::PerRead => format!("nothing came for {t} s"),
                ureq::Timeout::Global => format!(
                    "not done in time: a request has {t} s, and a blob transfer longer only at the \
                     minimum rate"
                ),
                other => format!("not done within {t} s ({other})"),
            };
            return self.timeout(op, url, why);
        }
        if let ureq::Error::Io(io) = &e {
            if let Some(slow) = io.get_ref().and_then(|x| x.downcast_ref::<TooSlow>()) {
                return self.timeout(op, url, slow.0.clone());
            }
        }
        Error::Transport { registry: self.registry.clone(), op: format!("{op} {url}"), why: e.to_string() }
    }

    /// `resp`'s body, at most `limit` bytes, read while `pace` allows.
    pub fn read_paced(
        &self,
        op: &str,
        url: &str,
        resp: Response<Body>,
        limit: u64,
        pace: &mut Pace,
    ) -> Result<Vec<u8>, Error> {
        let mut body = resp.into_body();
        let mut reader = body.with_config().limit(limit).reader();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let read = reader.read(&mut buf);
            if let Some(why) = pace.too_slow() {
                return Err(self.timeout(op, url, why));
            }
            match read {
                Ok(0) => return Ok(out),
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    pace.add(n as u64);
                }
                Err(e) => return Err(self.body_error(op, url, e)),
            }
        }
    }

    /// The start of an error answer's body, for the message: what 64 KiB
    /// and `timeout` give, so that an error page cannot hold exprun either.
    pub fn error_body(&self, resp: &mut Response<Body>) -> Vec<u8> {
        let until = Instant::now() + self.limits.timeout;
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 14];
        while out.len() < 64 << 10 && Instant::now() < until {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out.truncate(64 << 10);
        out
    }

    /// A failed read of a body being streamed: [`Error::Timeout`] when the
    /// request's overall limit passed, else [`Error::Transport`] (a stall or
    /// a dropped connection, which a download resumes after).
    pub fn body_error(&self, op: &str, url: &str, e: std::io::Error) -> Error {
        let inner = e.get_ref().and_then(|x| x.downcast_ref::<ureq::Error>());
        if let Some(ureq::Error::Timeout(ureq::Timeout::Global)) = inner {
            return self.timeout(op, url, "its time at the minimum rate ran out".into());
        }
        Error::Transport { registry: self.registry.clone(), op: format!("{op} {url}"), why: e.to_string() }
    }

    /// A limit passed: [`Error::Timeout`], saying which and how to change it.
    pub fn timeout(&self, op: &str, url: &str, why: String) -> Error {
        Error::Timeout {
            registry: self.registry.clone(),
            op: format!("{op} {url}"),
            why,
            limits: self.limits.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_have_scheme_host_and_port() {
        let o = Origin::of("http://127.0.0.1:5000/v2/").unwrap();
        assert_eq!(o.to_string(), "http://127.0.0.1:5000");
        assert_eq!(Origin::of("https://Registry.Lab/v2/").unwrap().to_string(), "https://registry.lab:443");
        assert_eq!(Origin::of("https://registry.lab:443/x"), Origin::of("https://registry.lab/y"));
        assert_ne!(Origin::of("http://h:5000/"), Origin::of("http://h:5001/"));
        assert_ne!(Origin::of("http://h/"), Origin::of("https://h/"));
        assert_eq!(Origin::of("file:///etc/passwd"), None);
        assert_eq!(Origin::of("ftp://h/x"), None);
        assert_eq!(Origin::of("/relative"), None);
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "http://127.0.0.1:5000/v2/r/blobs/sha256:ab?x=1";
        assert_eq!(resolve(base, "https://cdn/x?sig=1"), "https://cdn/x?sig=1");
        assert_eq!(resolve(base, "//cdn:81/x"), "http://cdn:81/x");
        assert_eq!(resolve(base, "/storage/1"), "http://127.0.0.1:5000/storage/1");
        assert_eq!(resolve(base, "other"), "http://127.0.0.1:5000/v2/r/blobs/other");
        assert_eq!(resolve(base, "file:///etc/passwd"), "file:///etc/passwd");
    }

    #[test]
    fn the_pace_allows_the_first_timeout_then_wants_the_minimum_rate() {
        let limits = Timeouts { timeout: Duration::from_secs(10), min_rate: 1000 };
        let mut p = Pace::new(limits);
        assert!(p.too_slow().is_none());
        p.start -= Duration::from_secs(20);
        assert!(p.too_slow().is_some_and(|w| w.contains("0 bytes in 20.0 s") && w.contains("1000 B/s")));
        p.add(11_000);
        assert!(p.too_slow().is_none());
        let none = Pace { limits: Timeouts { min_rate: 0, ..limits }, ..p.clone() };
        assert!(none.too_slow().is_none() && none.deadline(1 << 30).is_none());
        let d = p.deadline(5_000).unwrap();
        assert_eq!(d, p.start + Duration::from_secs(16));
    }
}
