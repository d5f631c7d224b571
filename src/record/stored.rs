//! A record on disk: `runs/<id>/record.json` with its shared parts as objects
//! ([`store`]), and its line in the index ([`index`]).

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::index::{self, Entry};
use super::store::{self, GetError, Store};
use super::{max_record_bytes, Error, RunRecord};
use crate::digest::Digest;

/// Fields of the stored form shorter than this stay in record.json: an
/// object costs a file.
const MIN_SHARED: usize = 256;

/// Whether record.json is synced before its rename (docs/benchmarks.md,
/// "Records at the scale of a sweep", measures both).
const DURABLE: bool = true;

/// A reader that counts the bytes it has read.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: io::Read> io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The capability sets of a spec in one order (they are sets; serialised
/// from hash sets they come in any order), so equal specs make one object.
fn canonical_spec(spec: &mut serde_json::Value) {
    let Some(caps) = spec.pointer_mut("/process/capabilities").and_then(|c| c.as_object_mut()) else {
        return;
    };
    for set in caps.values_mut() {
        if let Some(list) = set.as_array_mut() {
            list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
}

impl RunRecord {
    /// The form written to record.json: each of [`store::SHARED`] put into
    /// `objects` and named by a reference. The objects named.
    fn stored(&self, objects: &Store) -> Result<(serde_json::Value, Vec<Digest>), Error> {
        let mut v = serde_json::to_value(self).map_err(|e| Error::Io {
            op: "serialising the record of",
            path: self.run_id.clone().into(),
            source: io::Error::other(e),
        })?;
        let mut named = Vec::new();
        for key in store::SHARED {
            let Some(field) = v.get_mut(key) else { continue };
            if field.is_null() {
                continue;
            }
            if key == "spec" {
                canonical_spec(field);
            }
            let text = field.to_string();
            let Some(object) = store::template(&text, &self.run_id).filter(|_| text.len() >= MIN_SHARED)
            else {
                continue;
            };
            let digest = objects.put(object.as_bytes(), DURABLE)?;
            *field = store::reference(&digest);
            named.push(digest);
        }
        for key in ["inputs", "outputs"] {
            for d in v.get_mut(key).and_then(|l| l.as_array_mut()).into_iter().flatten() {
                let Some(entries) = d.pointer_mut("/tree/entries") else { continue };
                let text = entries.to_string();
                let Some(object) =
                    store::template(&text, &self.run_id).filter(|_| text.len() > store::ENTRIES)
                else {
                    continue;
                };
                let digest = objects.put(object.as_bytes(), DURABLE)?;
                *entries = store::reference(&digest);
                named.push(digest);
            }
        }
        Ok((v, named))
    }

    /// Write `runs/<id>/record.json` atomically (and synced): its shared
    /// parts as objects first, then the record, then its index line, all
    /// under the index's shared lock (so `runs rm` does not take an object
    /// this record is about to name).
    pub fn write(&self, runs_dir: &Path) -> Result<PathBuf, Error> {
        let dir = runs_dir.join(&self.run_id);
        crate::fsutil::create_private_dir_all(&dir).map_err(|source| Error::Io {
            op: "creating",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("record.json");
        let _lock = index::lock(runs_dir, false)?;
        let (stored, named) = self.stored(&Store::of(runs_dir))?;
        // Compact: a record of a plain run is then about 2 KB.
        let mut bytes = stored.to_string().into_bytes();
        bytes.push(b'\n');
        crate::fsutil::write_atomic(&path, &bytes, DURABLE).map_err(|source| Error::Io {
            op: "writing",
            path: path.clone(),
            source,
        })?;
        if let Err(e) = index::append(runs_dir, &Entry::of(self, &named)) {
            // The next `runs ls` finds the run missing from the index and adds it.
            eprintln!("exprun: warning: {e}");
        }
        Ok(path)
    }

    /// Read a record file: a regular file (not followed through a symlink) of
    /// at most [`max_record_bytes`], which is checked before anything is
    /// read and again while reading (the file may grow); the objects it names
    /// are read from the runs directory it is in, checked against their
    /// digests, and count towards the same limit.
    pub fn read(path: &Path) -> Result<Self, Error> {
        Self::read_stored(path).map(|(r, _)| r)
    }

    /// [`RunRecord::read`], and the objects the record named.
    pub fn read_stored(path: &Path) -> Result<(Self, Vec<Digest>), Error> {
        use std::io::Read;
        let limit = max_record_bytes()?;
        let io = |op| move |source| Error::Io { op, path: path.to_path_buf(), source };
        // O_NONBLOCK: opening a fifo planted as record.json does not wait for a writer.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => Error::NotAFile { path: path.to_path_buf() },
                _ => io("opening")(e),
            })?;
        let meta = file.metadata().map_err(io("reading"))?;
        if !meta.is_file() {
            return Err(Error::NotAFile { path: path.to_path_buf() });
        }
        let too_big = |path: &Path, size| Error::TooBig { path: path.to_path_buf(), size, limit };
        if meta.len() > limit {
            return Err(too_big(path, meta.len()));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let run = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let objects = Store::of(dir.parent().unwrap_or(Path::new(".")));
        // Parsed as it is read: the text is never held whole beside the record.
        let mut reader =
            io::BufReader::with_capacity(1 << 20, Counted { inner: file.take(limit + 1), count: 0 });
        let (parsed, resolved) = store::reading(objects, &run, limit.saturating_sub(meta.len()), || {
            serde_json::from_reader::<_, RunRecord>(&mut reader)
        });
        let count = reader.get_ref().count;
        if count > limit {
            return Err(too_big(path, count));
        }
        match resolved.error {
            Some(GetError::Store(e)) => return Err(e.into()),
            Some(GetError::TooBig { path, size }) => return Err(too_big(&path, count + size)),
            None => {}
        }
        let r = parsed.map_err(|source| match source.io_error_kind() {
            Some(_) => Error::Io { op: "reading", path: path.to_path_buf(), source: source.into() },
            None => Error::Parse { path: path.to_path_buf(), source },
        })?;
        if !resolved.named.is_empty() && r.run_id != run {
            return Err(store::Error::Reference {
                run,
                why: format!(
                    "its record says it is run {:?}: a record with shared parts is read only in its own directory",
                    r.run_id
                ),
            }
            .into());
        }
        Ok((r, resolved.named))
    }
}
