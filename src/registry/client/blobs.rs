//! Blobs: resumable downloads under the minimum rate, and uploads.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{header, Client, Uploaded, MAX_ATTEMPTS, MAX_STALLS};
use crate::digest::{Digest, Hasher};
use crate::registry::http::{Get, Pace, TooSlow};
use crate::registry::Error;

impl Client {
    /// Download blob `d` into `path`, going on from what `path` already holds;
    /// on a dropped connection, retry from where it stopped. `progress` gets the
    /// bytes already there first, then each chunk. The file is fsync'd and its
    /// content verified (length and sha256) before this returns; content that
    /// does not match is deleted. The download as a whole, all its attempts,
    /// keeps the minimum rate ([`Pace`]); one that fails by a deadline leaves
    /// `path` as it found it, so that a server that trickles bytes leaves none.
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
        let deadline = pace.deadline(size);
        let mut sink = Sink { file, hasher, have, kept: have, size, what: &what, pace, deadline, progress };
        if let Err(e) = self.fill(&url, &mut sink) {
            if let Error::Timeout { .. } = e {
                let _ = match sink.kept {
                    0 => std::fs::remove_file(path),
                    n => sink.file.set_len(n),
                };
            }
            return Err(e);
        }
        sink.file.sync_all().map_err(io_err("write"))?;
        let (found, _) = sink.hasher.finish();
        if &found != d {
            let _ = std::fs::remove_file(path);
            return Err(Error::DigestMismatch { what, expected: d.clone(), found });
        }
        Ok(())
    }

    /// Attempts at the rest of a blob, until it is all there.
    fn fill(&self, url: &str, sink: &mut Sink<'_>) -> Result<(), Error> {
        let mut stalls = 0;
        while sink.have < sink.size {
            if let Some(why) = sink.pace.too_slow() {
                return Err(self.http.timeout("get", url, why));
            }
            let before = sink.have;
            match self.download_once(url, sink) {
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
}

/// Where a download goes, and how it is going.
struct Sink<'a> {
    file: File,
    hasher: Hasher,
    /// Bytes in the file.
    have: u64,
    /// Bytes in the file from before this download (0 once it started over).
    kept: u64,
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
        self.kept = 0;
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
