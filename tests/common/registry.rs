//! A real registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1 for
//! the registry tests, and a small HTTP proxy in front of it that adds what the
//! registry itself cannot be asked to do: token (Bearer) authentication, a
//! connection dropped in the middle of a blob, and a blob whose bytes do not
//! match its digest. Both are stopped when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

/// Whether docker-registry is installed; prints SKIP (or fails under CI=true) if not.
pub fn available(test: &str) -> bool {
    if Path::new("/usr/bin/docker-registry").exists() {
        return true;
    }
    let why = "docker-registry is not installed (scripts/install-deps.sh installs it)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} cannot run ({why}) and CI=true forbids skipping");
    }
    println!("SKIP: {test}: {why}");
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A docker-registry process with its config and storage in a temp dir.
pub struct Registry {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    /// Start one; with `user`, it requires that user (htpasswd, basic auth).
    pub fn start(user: Option<(&str, &str)>) -> Self {
        let dir = tempfile::Builder::new().prefix("exprun-registry-").tempdir().unwrap();
        let port = free_port();
        let mut auth = String::new();
        if let Some((u, p)) = user {
            let out = Command::new("htpasswd").args(["-Bbn", u, p]).output().expect("run htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let r = Self { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start: {}", r.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// What the proxy does besides forwarding.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Forward everything.
    Plain,
    /// Require `Authorization: Bearer`, issued at /token to this user (basic auth).
    Bearer { user: String, password: String },
    /// The first GET of this blob is cut after this many body bytes.
    DropOnce { digest: String, after: usize },
    /// Every GET of this blob has one byte changed.
    Corrupt { digest: String },
    /// What Docker Hub, GHCR and quay.io do: anonymous Bearer tokens, and every
    /// blob GET answered with a 307 to a storage host (`localhost`, where the
    /// registry is `127.0.0.1`) with a signed URL. Like S3, the storage host
    /// refuses a request that carries an Authorization header. It holds each
    /// answer for `hold`, so downloads that run at once overlap, and it cuts its
    /// first answer for blob `drop` after 100,000 bytes.
    Hub { hold: Duration, drop: Option<String> },
    /// Every blob upload (the PUT that ends it) is held for `hold` and counted
    /// as active meanwhile; the first one is read whole and then answered by
    /// closing the connection, as a load balancer that times out does.
    Uploads { hold: Duration },
    /// The first `times` GETs of a manifest are answered 503, as a registry
    /// restarting behind its load balancer answers.
    Unavailable { times: usize },
}

/// A one-request-per-connection HTTP proxy in front of a registry. `log` holds
/// each request line with its Range and Authorization scheme.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<String>>,
    dropped: AtomicUsize,
    /// Storage answers or uploads in flight now, and the most there ever were at once.
    active: AtomicUsize,
    most_active: AtomicUsize,
}

/// Listen on a free port of 127.0.0.1 and give every connection to `handle`
/// in a thread of its own, until the returned flag is set.
pub fn listen(handle: impl Fn(TcpStream, u16) + Send + Sync + 'static) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, s2) = (Arc::new(handle), stop.clone());
    std::thread::spawn(move || {
        while !s2.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    let handle = handle.clone();
                    std::thread::spawn(move || handle(conn, port));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (port, stop)
}

impl Proxy {
    pub fn start(upstream: u16, mode: Mode) -> Self {
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let (port, stop) = listen(move |conn, port| {
            let _ = serve(conn, upstream, port, &mode, &sh);
        });
        Self { port, shared, stop }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The most storage answers (`Mode::Hub`) or uploads (`Mode::Uploads`) that
    /// were in flight at once.
    pub fn most_at_once(&self) -> usize {
        self.shared.most_active.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Counts a storage answer as active while it lives.
struct Active<'a>(&'a Shared);

impl<'a> Active<'a> {
    fn new(s: &'a Shared) -> Self {
        let now = s.active.fetch_add(1, Ordering::SeqCst) + 1;
        s.most_active.fetch_max(now, Ordering::SeqCst);
        Self(s)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(mut conn: TcpStream, upstream: u16, port: u16, mode: &Mode, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let mut request = head[0].clone();
    let header = |name: &str| {
        head[1..].iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let authz = header("authorization").unwrap_or_default();
    let scheme = authz.split(' ').next().unwrap_or("").to_string();
    shared
        .log
        .lock()
        .unwrap()
        .push(format!("{request} range={} auth={scheme}", header("range").unwrap_or_default()));
    let mut path = request.split(' ').nth(1).unwrap_or("").to_string();
    let is_blob_get = request.starts_with("GET ") && path.contains("/blobs/sha256:");

    let mut _active = None;
    let mut cut_after = None;
    match mode {
        Mode::Bearer { user, password } => {
            if path.starts_with("/token") {
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                );
                if authz != want {
                    return respond(&mut conn, "401 Unauthorized", "{\"details\":\"bad credentials\"}");
                }
                return respond(&mut conn, "200 OK", "{\"token\":\"test-token\"}");
            }
            if authz != "Bearer test-token" {
                return challenge(&mut conn, port);
            }
        }
        Mode::Hub { hold, drop } => {
            if path.starts_with("/token") {
                return respond(&mut conn, "200 OK", "{\"token\":\"test-token\"}");
            }
            if let Some(rest) = path.strip_prefix("/storage") {
                if !authz.is_empty() {
                    return respond(
                        &mut conn,
                        "400 Bad Request",
                        "{\"code\":\"InvalidArgument\",\"message\":\"Only one auth mechanism allowed\"}",
                    );
                }
                let rest = rest.split('?').next().unwrap_or("").to_string();
                if drop.as_ref().is_some_and(|d| rest.ends_with(d.as_str()))
                    && shared.dropped.fetch_add(1, Ordering::SeqCst) == 0
                {
                    cut_after = Some(100_000);
                }
                request = request.replacen(&path, &rest, 1);
                path = rest;
                _active = Some(Active::new(shared));
                std::thread::sleep(*hold);
            } else if authz != "Bearer test-token" {
                return challenge(&mut conn, port);
            } else if is_blob_get {
                let resp = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{port}/storage{path}?X-Amz-Signature=0f\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return conn.write_all(resp.as_bytes());
            }
        }
        Mode::Unavailable { times }
            if request.starts_with("GET ")
                && path.contains("/manifests/")
                && shared.dropped.fetch_add(1, Ordering::SeqCst) < *times =>
        {
            return respond(
                &mut conn,
                "503 Service Unavailable",
                "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"back soon\"}]}",
            );
        }
        Mode::Uploads { hold } if request.starts_with("PUT ") && path.contains("/blobs/uploads/") => {
            _active = Some(Active::new(shared));
            std::thread::sleep(*hold);
            if shared.dropped.fetch_add(1, Ordering::SeqCst) == 0 {
                return conn.shutdown(std::net::Shutdown::Both);
            }
        }
        _ => {}
    }

    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut out = String::new();
    out.push_str(&request);
    out.push_str("\r\n");
    for h in &head[1..] {
        let lower = h.to_ascii_lowercase();
        if lower.starts_with("connection:") || (lower.starts_with("authorization: bearer")) {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let body_start = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
    let is_get_of = |d: &str| is_blob_get && path.ends_with(&format!("/blobs/{d}"));
    match mode {
        Mode::DropOnce { digest, after }
            if is_get_of(digest) && shared.dropped.fetch_add(1, Ordering::SeqCst) == 0 =>
        {
            cut_after = Some(*after);
        }
        Mode::Corrupt { digest } if is_get_of(digest) && resp.len() > body_start + 100 => {
            resp[body_start + 100] ^= 0xff;
        }
        _ => {}
    }
    if let Some(after) = cut_after {
        let cut = (body_start + after).min(resp.len());
        conn.write_all(&resp[..cut])?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    conn.write_all(&resp)
}

/// A 401 asking for a Bearer token from this proxy's /token.
fn challenge(conn: &mut TcpStream, port: u16) -> std::io::Result<()> {
    let challenge =
        format!("Www-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test\"\r\n");
    let msg = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}";
    let resp = format!(
        "HTTP/1.1 401 Unauthorized\r\n{challenge}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
        msg.len()
    );
    conn.write_all(resp.as_bytes())
}

fn respond(conn: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes())
}

/// An auth file (podman's auth.json format) for `host` with `user:password`.
pub fn auth_file(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("auth.json");
    std::fs::write(&path, format!("{{\"auths\":{{\"{host}\":{{\"auth\":\"{auth}\"}}}}}}")).unwrap();
    path
}

/// An HTTP forward proxy (CONNECT only, as exprun's client speaks to one, even
/// for plain HTTP) that logs each CONNECT line, as an institution's proxy in
/// `HTTPS_PROXY` would be.
pub struct ConnectProxy {
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    pub fn start() -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        let (port, stop) = listen(move |conn, _| {
            let _ = tunnel(conn, &l2);
        });
        Self { port, log, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn tunnel(mut conn: TcpStream, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let first = first.trim_end().to_string();
    log.lock().unwrap().push(first.clone());
    let Some(target) = first.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next()) else {
        return respond(&mut conn, "405 Method Not Allowed", "{}");
    };
    let up = TcpStream::connect(target)?;
    conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut up_r, mut conn_w) = (up.try_clone()?, conn.try_clone()?);
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut conn_w);
        let _ = conn_w.shutdown(std::net::Shutdown::Write);
    });
    let mut up_w = up;
    let _ = std::io::copy(&mut reader, &mut up_w);
    let _ = up_w.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
    Ok(())
}
