//! A small registry on 127.0.0.1 that an attack controls: it serves what a test
//! puts into it (manifests, blobs, run artifacts laid out as `exprun push --run`
//! lays them out), and a test's handler may answer any request first, to
//! redirect, lie, stall or ask for credentials elsewhere. Every request is
//! logged with its headers and the port it came to, so a test can assert that
//! no credential reached a place it does not belong. One request per
//! connection; plain HTTP, which exprun speaks to loopback registries.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest as _;

use crate::common::registry::listen;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path with its query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The port it arrived on.
    pub port: u16,
}

impl Request {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A handler's answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status with a JSON body.
    Status(u16, String),
    /// A status, extra headers and a body.
    Bytes(u16, Vec<(String, String)>, Vec<u8>),
    /// A redirect (301, 302, 307, 308) to `Location`.
    Redirect(u16, String),
    /// A 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// A 200 promising a gigabyte, then one byte a second until the client goes.
    Stall,
}

type Handler = dyn Fn(&Request) -> Option<Reply> + Send + Sync;

#[derive(Default)]
struct Content {
    /// (repository, digest) → bytes.
    blobs: BTreeMap<(String, String), Vec<u8>>,
    /// (repository, tag or digest) → (media type, bytes).
    manifests: BTreeMap<(String, String), (String, Vec<u8>)>,
}

/// The registry; it stops when dropped.
pub struct EvilRegistry {
    port: u16,
    content: Arc<Mutex<Content>>,
    log: Arc<Mutex<Vec<Request>>>,
    /// Stops the listener.
    stop: Arc<AtomicBool>,
    /// Ends the stalling answers.
    stopping: Arc<AtomicBool>,
}

impl EvilRegistry {
    /// A registry that serves honestly what is put into it.
    pub fn start() -> Self {
        Self::with(|_| None)
    }

    /// A registry whose `handler` answers first; `None` serves the content.
    pub fn with(handler: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static) -> Self {
        let content = Arc::new(Mutex::new(Content::default()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let stopping = Arc::new(AtomicBool::new(false));
        let (c, l, s) = (content.clone(), log.clone(), stopping.clone());
        let (port, stop) = listen(move |conn, port| {
            let _ = serve(conn, port, &*handler, &c, &l, &s);
        });
        Self { port, content, log, stop, stopping }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Store a blob in `repo`; its digest.
    pub fn put_blob(&self, repo: &str, bytes: Vec<u8>) -> String {
        let digest = sha256(&bytes);
        self.content.lock().unwrap().blobs.insert((repo.into(), digest.clone()), bytes);
        digest
    }

    /// Store a manifest in `repo` under `reference` and its digest; its digest.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: Vec<u8>) -> String {
        let digest = sha256(&bytes);
        let mut c = self.content.lock().unwrap();
        for r in [reference, digest.as_str()] {
            c.manifests.insert((repo.into(), r.into()), (media_type.into(), bytes.clone()));
        }
        digest
    }

    /// A run artifact as `exprun push --run` lays it out: `record` as
    /// record.json, then each `(title, tar.gz)` layer (`streams.tar.gz`,
    /// `outputs.tar.gz`, `inputs.tar.gz`); its subject is the image the record
    /// names, which the replaying store must already hold. The manifest's digest.
    pub fn put_run(
        &self,
        repo: &str,
        tag: &str,
        record: &serde_json::Value,
        files: &[(&str, Vec<u8>)],
    ) -> String {
        const FILES: &str = "application/vnd.exprun.run.files.v1.tar+gzip";
        let record_bytes = serde_json::to_vec_pretty(record).unwrap();
        let mut layers = vec![self.descriptor(
            repo,
            "application/vnd.exprun.run.record.v1+json",
            record_bytes,
            Some("record.json"),
        )];
        for (title, bytes) in files {
            layers.push(self.descriptor(repo, FILES, bytes.clone(), Some(title)));
        }
        let empty = self.descriptor(repo, "application/vnd.oci.empty.v1+json", b"{}".to_vec(), None);
        let image = record["image"]["manifest_digest"].as_str().unwrap_or_default();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.exprun.run.v1",
            "config": empty,
            "layers": layers,
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image, "size": 0},
            "annotations": {"dev.exprun.run.id": record["run_id"]},
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        self.put_manifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", bytes)
    }

    fn descriptor(
        &self,
        repo: &str,
        media_type: &str,
        bytes: Vec<u8>,
        title: Option<&str>,
    ) -> serde_json::Value {
        let size = bytes.len();
        let digest = self.put_blob(repo, bytes);
        let mut d = serde_json::json!({"mediaType": media_type, "digest": digest, "size": size});
        if let Some(t) = title {
            d["annotations"] = serde_json::json!({"org.opencontainers.image.title": t});
        }
        d
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for EvilRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// A gzip'd tar of regular files `(path, data, mode)`.
pub fn tar_gz(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn serve(
    mut conn: TcpStream,
    port: u16,
    handler: &Handler,
    content: &Mutex<Content>,
    log: &Mutex<Vec<Request>>,
    stopping: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = Request { method, path, headers, port };
    let len: usize = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len.min(64 << 20)];
    reader.read_exact(&mut body)?;
    log.lock().unwrap().push(req.clone());

    let reply = handler(&req).unwrap_or_else(|| honest(&req, &content.lock().unwrap()));
    let head_only = req.method == "HEAD";
    match reply {
        Reply::Status(code, json) => respond(&mut conn, code, &[json_type()], json.as_bytes(), head_only),
        Reply::Bytes(code, extra, bytes) => respond(&mut conn, code, &extra, &bytes, head_only),
        Reply::Redirect(code, location) => {
            respond(&mut conn, code, &[("Location".into(), location)], b"", head_only)
        }
        Reply::Challenge(value) => {
            let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            respond(&mut conn, 401, &[("WWW-Authenticate".into(), value), json_type()], body, head_only)
        }
        Reply::Stall => {
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                  Content-Length: 1000000000\r\nConnection: close\r\n\r\n",
            )?;
            while !stopping.load(Ordering::SeqCst) {
                conn.write_all(b"x")?;
                conn.flush()?;
                std::thread::sleep(Duration::from_secs(1));
            }
            conn.shutdown(std::net::Shutdown::Both)
        }
    }
}

fn json_type() -> (String, String) {
    ("Content-Type".into(), "application/json".into())
}

/// The honest answer from the content: `/v2/`, manifests and blobs (with
/// `Range: bytes=N-`).
fn honest(req: &Request, content: &Content) -> Reply {
    let not_found = || Reply::Status(404, r#"{"errors":[{"code":"NOT_FOUND","message":"unknown"}]}"#.into());
    let path = req.path.split('?').next().unwrap_or("");
    if path == "/v2/" || path == "/v2" {
        return Reply::Status(200, "{}".into());
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return not_found() };
    let (repo, kind, reference) = match [rest.rsplit_once("/manifests/"), rest.rsplit_once("/blobs/")] {
        [Some((repo, r)), _] => (repo, "manifests", r),
        [_, Some((repo, r))] => (repo, "blobs", r),
        _ => return not_found(),
    };
    let key = (repo.to_string(), reference.to_string());
    if kind == "manifests" {
        return match content.manifests.get(&key) {
            Some((media_type, bytes)) => Reply::Bytes(
                200,
                vec![
                    ("Content-Type".into(), media_type.clone()),
                    ("Docker-Content-Digest".into(), sha256(bytes)),
                ],
                bytes.clone(),
            ),
            None => not_found(),
        };
    }
    let Some(bytes) = content.blobs.get(&key) else { return not_found() };
    let from = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let octets = ("Content-Type".to_string(), "application/octet-stream".to_string());
    match from {
        Some(n) if n < bytes.len() => Reply::Bytes(
            206,
            vec![octets, ("Content-Range".into(), format!("bytes {n}-{}/{}", bytes.len() - 1, bytes.len()))],
            bytes[n..].to_vec(),
        ),
        _ => {
            Reply::Bytes(200, vec![octets, ("Docker-Content-Digest".into(), reference.into())], bytes.clone())
        }
    }
}

fn respond(
    conn: &mut TcpStream,
    code: u16,
    headers: &[(String, String)],
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Status",
    };
    let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    conn.write_all(out.as_bytes())?;
    if !head_only {
        conn.write_all(body)?;
    }
    conn.flush()
}

/// The registry itself, attacked by nobody: it serves a pushed run honestly.
#[test]
fn the_evil_registry_serves_a_run_honestly() {
    let r = EvilRegistry::start();
    let record = serde_json::json!({"run_id": "ab", "image": {"manifest_digest": "sha256:00"}});
    let files = tar_gz(&[("0/a", b"data", 0o644)]);
    let digest = r.put_run("runs/x", "t", &record, &[("outputs.tar.gz", files.clone())]);
    let mut conn = TcpStream::connect(("127.0.0.1", r.port())).unwrap();
    write!(conn, "GET /v2/runs/x/manifests/t HTTP/1.1\r\nAuthorization: Basic eA==\r\n\r\n").unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains(&digest), "{resp}");
    assert!(resp.contains("application/vnd.exprun.run.v1"), "{resp}");
    let log = r.requests();
    assert_eq!(log[0].header("authorization"), Some("Basic eA=="));
    assert_eq!(log[0].port, r.port());
}

/// exprun fetches an honest run from it, end to end.
#[test]
fn exprun_fetches_an_honest_run_from_the_evil_registry() {
    use crate::common::{privileged, TestRoot};
    if !privileged("exprun_fetches_an_honest_run_from_the_evil_registry") {
        return;
    }
    let here = TestRoot::with_busybox();
    let (code, _, err) = here.run(&["busybox:latest", "echo", "hello"]);
    assert_eq!(code, 0, "{err}");
    let record = here.last_record();
    let r = EvilRegistry::start();
    r.put_run("runs/honest", "t", &record, &[]);
    let there = TestRoot::with_busybox();
    let reference = format!("oci://{}/runs/honest:t", r.host());
    let out = there.exprun(&["replay", &reference], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n", "{err}");
    there.assert_no_leftovers();
}
