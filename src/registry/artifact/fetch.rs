//! `replay oci://REF` and `verify oci://REF`: a pushed run, stored here.
//!
//! The record is stored under its own run id, byte for byte (its digest in the
//! manifest names it), in `runs/<id>/` (0700, as `runs/` itself); the
//! artifact's files go to `runs/<id>/artifact/` (0700, made first, even when
//! the artifact has no file layer: it is what marks a run as fetched); the
//! image is pulled by digest from the same repository when the store lacks
//! it. A run recorded in this root is never replaced nor marked fetched.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode, SFlag};
use serde::Deserialize;

use super::unpack::{unpack, Tops};
use super::{Error, ANN_TITLE, ARTIFACT_DIR, ARTIFACT_TYPE};
use crate::digest::Digest;
use crate::image::reference::RemoteRef;
use crate::image::{ImageStore, Limits};
use crate::record::RunRecord;
use crate::registry::client::{Client, ClientOptions};
use crate::registry::conf::location;
use crate::registry::pull::{self, PullOptions};
use crate::state::Root;

#[derive(Deserialize)]
struct ArtifactManifest {
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    layers: Vec<Layer>,
    #[serde(default)]
    subject: Option<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    digest: Digest,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

impl ArtifactManifest {
    fn layer(&self, title: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.annotations.get(ANN_TITLE).map(String::as_str) == Some(title))
    }
}

/// The longest run id accepted from an artifact.
const MAX_RUN_ID: usize = 64;

/// Fetch the run pushed at `r` into `root`, with its image into `store`, and
/// return its record with the request's inputs pointing at the artifact's copies.
pub fn fetch_run(
    root: &Root,
    store: &ImageStore,
    r: &RemoteRef,
    o: &ClientOptions,
) -> Result<RunRecord, Error> {
    let (at, at_options) = location(r, o)?;
    let client = Client::connect(&at, &at_options, false)?;
    let doc = client.manifest(&r.reference())?;
    let what = format!("{r}");
    let m: ArtifactManifest = serde_json::from_slice(&doc.bytes)
        .map_err(|e| Error::Invalid { what: what.clone(), why: format!("not an artifact manifest: {e}") })?;
    if m.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
        return Err(Error::Invalid {
            what,
            why: format!(
                "artifactType is {:?}, not {ARTIFACT_TYPE:?}: this is not a run pushed with exprun push --run",
                m.artifact_type.clone().unwrap_or_default()
            ),
        });
    }
    let rec = m
        .layer("record.json")
        .ok_or_else(|| Error::Invalid { what: what.clone(), why: "it has no record.json".into() })?;
    // A record may be as large as a record exprun reads (its trees list every
    // output file), past a manifest's bound: it goes through a file.
    let max = crate::record::max_record_bytes()?;
    if rec.size > max {
        return Err(Error::Invalid {
            what: format!("record.json of {what}"),
            why: format!(
                "{} bytes is over the {max}-byte limit of a run record; to fetch it anyway, set {}",
                rec.size,
                crate::record::MAX_RECORD_SIZE_VAR
            ),
        });
    }
    let record_bytes = {
        let scratch = store.scratch()?;
        let path = scratch.path().join("record.json");
        client.download(&rec.digest, rec.size, &path, &|_| {})?;
        fs::read(&path).map_err(|e| Error::Io { op: "read", path, source: e })?
    };
    let mut record: RunRecord = serde_json::from_slice(&record_bytes)
        .map_err(|e| Error::Invalid { what: format!("record.json of {what}"), why: e.to_string() })?;
    let id = &record.run_id;
    if id.len() < 16 || id.len() > MAX_RUN_ID || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid {
            what: format!("record.json of {what}"),
            why: format!(
                "run id {:?} is not 16 to {MAX_RUN_ID} hex digits",
                crate::record::for_terminal(&record.run_id)
            ),
        });
    }
    let runs = root.private_runs_dir()?;
    let dir = runs.join(id);
    let created = store_record(&dir, id, &record_bytes, &rec.digest)?;
    // A run that could not be fetched whole (its files, its image) is not
    // left half-made: what this call stored goes again.
    let fetched = fetch_files_and_image(store, r, o, &client, &m, &record, &dir);
    if fetched.is_err() && created {
        let _ = fs::remove_dir_all(&dir);
    }
    fetched?;
    localise(&mut record, &runs);
    Ok(record)
}

/// Make `dir` (0700), its `artifact/` (0700) and its record.json; `false`
/// when the same run was fetched here before.
fn store_record(dir: &Path, id: &str, bytes: &[u8], digest: &Digest) -> Result<bool, Error> {
    let record_path = dir.join("record.json");
    let refuse = |why: String| Error::Invalid { what: format!("run {id}"), why };
    match fs::read(&record_path) {
        Ok(_) if !dir.join(ARTIFACT_DIR).is_dir() => {
            return Err(refuse(format!(
                "it was recorded in this state root ({}), and a pushed copy never replaces it; \
                 replay it here with `exprun replay {}`, or fetch the artifact into another root \
                 (`exprun --root DIR replay oci://REF`)",
                record_path.display(),
                &id[..12]
            )))
        }
        Ok(local) if Digest::of_bytes(&local) != *digest => {
            return Err(refuse(format!(
                "another artifact's record of it was fetched here before ({}); remove that with \
                 `exprun runs rm {}` to fetch this one",
                record_path.display(),
                &id[..12]
            )))
        }
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io { op: "read", path: record_path, source: e }),
    }
    let private = || {
        let mut b = fs::DirBuilder::new();
        b.mode(0o700);
        b
    };
    match private().create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(refuse(format!(
                "{} exists without a record (a run of that id in progress, or one that failed); \
                 refused",
                dir.display()
            )))
        }
        Err(e) => return Err(Error::Io { op: "create directory", path: dir.to_path_buf(), source: e }),
    }
    let written = private()
        .create(dir.join(ARTIFACT_DIR))
        .and_then(|()| crate::fsutil::write_atomic(&record_path, bytes, true));
    if let Err(e) = written {
        let _ = fs::remove_dir_all(dir);
        return Err(Error::Io { op: "write", path: record_path, source: e });
    }
    Ok(true)
}

/// The artifact's files (under `dir/artifact/`) and the run's image, for
/// [`fetch_run`].
fn fetch_files_and_image(
    store: &ImageStore,
    r: &RemoteRef,
    o: &ClientOptions,
    client: &Client,
    m: &ArtifactManifest,
    record: &RunRecord,
    dir: &Path,
) -> Result<(), Error> {
    if m.subject.as_ref().zip(record.image.as_ref()).is_some_and(|(s, i)| s.digest != i.manifest_digest) {
        return Err(Error::Invalid {
            what: r.to_string(),
            why: "its subject is not the image its record names".into(),
        });
    }
    let limits = Limits::default();
    let scratch = store.scratch()?;
    let files = dir.join(ARTIFACT_DIR);
    let inputs = record.request.as_ref().map_or(record.inputs.len(), |q| q.inputs.len());
    let layers = [
        ("streams.tar.gz", Tops::Names(&["stdout", "stderr"])),
        ("outputs.tar.gz", Tops::Indices(record.outputs.len())),
        ("inputs.tar.gz", Tops::Indices(inputs)),
    ];
    for (title, tops) in &layers {
        let Some(l) = m.layer(title) else { continue };
        let dest = files.join(title.trim_end_matches(".tar.gz"));
        if dest.exists() {
            continue;
        }
        if l.size > limits.max_bytes {
            return Err(Error::Invalid {
                what: format!("{title} of {r}"),
                why: format!(
                    "{} bytes is over the {}-byte limit of an image layer",
                    l.size, limits.max_bytes
                ),
            });
        }
        let blob = scratch.path().join(title);
        client.download(&l.digest, l.size, &blob, &|_| {})?;
        unpack(&blob, title, &dest, scratch.path(), tops, limits)?;
        let _ = fs::remove_file(&blob);
    }
    for s in ["stdout", "stderr"] {
        copy_stream(&files.join("streams").join(s), &dir.join(s))?;
    }
    // The image, from the same repository, by digest.
    if let Some(image) = &record.image {
        if store.resolve(&image.manifest_digest.to_string()).is_err() {
            let at = RemoteRef { tag: None, digest: Some(image.manifest_digest.clone()), ..r.clone() };
            pull::pull(store, &at, &PullOptions { client: o.clone(), ..PullOptions::default() })?;
        }
    }
    Ok(())
}

/// Copy a kept stream from the artifact to where a recorded run keeps it:
/// the source opened without following a symlink and only when it is a
/// regular file; the copy new (0600). A missing source, or a copy already
/// there, is left as it is.
fn copy_stream(from: &Path, to: &Path) -> Result<(), Error> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let fd = match nix::fcntl::open(from, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::Io { op: "open", path: from.to_path_buf(), source: e.into() }),
    };
    let st = fstat(fd.as_fd()).map_err(|e| Error::Io {
        op: "read",
        path: from.to_path_buf(),
        source: e.into(),
    })?;
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Err(Error::Invalid {
            what: from.display().to_string(),
            why: "not a regular file; refused".into(),
        });
    }
    let out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to);
    let mut out = match out {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::Io { op: "create", path: to.to_path_buf(), source: e }),
    };
    io::copy(&mut File::from(fd), &mut out).map_err(|e| Error::Io {
        op: "copy",
        path: to.to_path_buf(),
        source: e,
    })?;
    Ok(())
}

/// For a run fetched from an artifact: read its inputs (for a replay) and its
/// outputs (for `verify`'s comparisons) from the artifact's copies under
/// `runs/<id>/artifact/` rather than from the paths of the host it ran on. A
/// run recorded here has no such copies and is left as it is.
pub fn localise(record: &mut RunRecord, runs_dir: &Path) {
    let files = runs_dir.join(&record.run_id).join(ARTIFACT_DIR);
    let inputs = files.join("inputs");
    if inputs.is_dir() {
        if let Some(req) = record.request.as_mut() {
            for (i, m) in req.inputs.iter_mut().enumerate() {
                m.source = inputs.join(i.to_string());
            }
        }
    }
    for (i, o) in record.outputs.iter_mut().enumerate() {
        let copy = files.join("outputs").join(i.to_string());
        if copy.exists() {
            o.source = copy;
        }
    }
}
