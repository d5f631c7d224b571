//! A recorded run as an OCI artifact: `exprun push --run RUN REF` and
//! `exprun replay oci://REF`.
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//!           artifactType  application/vnd.exprun.run.v1
//!           config        the empty descriptor ({})
//!           subject       the run's image manifest, pushed to the same repository
//!           layers        record.json     application/vnd.exprun.run.record.v1+json
//!                         streams.tar.gz  the kept stdout and stderr
//!                         outputs.tar.gz  output i under i/
//!                         inputs.tar.gz   input i under i/ (unless --no-inputs)
//! ```
//!
//! Replaying it: the record is stored under its own run id (byte for byte, so
//! its digest still names it); the files go under `runs/<id>/artifact/`; the
//! image is pulled by digest from the same repository when the store lacks it;
//! and the replay reads the artifact's inputs in place of the recorded host paths,
//! checking them against the recorded digests as for any replay.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use serde::Deserialize;
use serde_json::json;

use super::client::{Client, ClientOptions};
use super::conf::location;
use super::pull::{self, PullOptions};
use super::push::{image_blobs, media_type_of, mount_sources, push_blobs, repositories};
use super::reference::RemoteRef;
use super::transfer::Transfer;
use super::Error;
use crate::digest::{Digest, HashingWriter};
use crate::image::{ImageStore, Limits};
use crate::record::RunRecord;
use crate::state::Root;

/// The artifact type of a pushed run.
pub const ARTIFACT_TYPE: &str = "application/vnd.exprun.run.v1";
const MT_RECORD: &str = "application/vnd.exprun.run.record.v1+json";
const MT_FILES: &str = "application/vnd.exprun.run.files.v1.tar+gzip";
const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const ANN_TITLE: &str = "org.opencontainers.image.title";
const EMPTY_JSON: &[u8] = b"{}";

/// What `push --run` did.
#[derive(Debug, Clone)]
pub struct PushedRun {
    /// The run.
    pub run_id: String,
    /// The artifact manifest's digest.
    pub digest: Digest,
    /// The tag it was pushed under.
    pub tag: String,
    /// Blobs uploaded (artifact and image).
    pub uploaded: usize,
}

/// One layer of the artifact, written in scratch.
struct Part {
    title: &'static str,
    media_type: &'static str,
    path: PathBuf,
    digest: Digest,
    size: u64,
}

/// Push run `run` of `root` (with its image, from `store`) to `r`.
pub fn push_run(
    root: &Root,
    store: &ImageStore,
    run: &str,
    r: &RemoteRef,
    o: &ClientOptions,
    t: &Transfer,
    with_inputs: bool,
) -> Result<PushedRun, Error> {
    let id = root
        .resolve_run(run)
        .map_err(|e| Error::Invalid { what: format!("run {run}"), why: e.to_string() })?;
    let dir = root.runs_dir().join(&id);
    let record_path = dir.join("record.json");
    let record_bytes =
        fs::read(&record_path).map_err(|e| Error::Io { op: "read", path: record_path.clone(), source: e })?;
    let record = RunRecord::read(&record_path)?;
    let not =
        |why: &str| Error::Invalid { what: format!("run {}", &id[..12.min(id.len())]), why: why.into() };
    if record.request.is_none() {
        return Err(not("it has no recorded request (an OCI bundle run, or one whose exprun died); only \
                        runs of `exprun run` can be replayed elsewhere"));
    }
    let image = record.image.as_ref().ok_or_else(|| not("its record names no image"))?;
    let resolved = store.resolve(&image.manifest_digest.to_string())?;
    let image_manifest = store.read_blob(&resolved.manifest_digest)?;

    let scratch = store.scratch()?;
    let mut parts = vec![part_from_bytes(scratch.path(), "record.json", MT_RECORD, &record_bytes)?];
    let streams: Vec<(String, PathBuf)> = ["stdout", "stderr"]
        .iter()
        .map(|s| (s.to_string(), dir.join(s)))
        .filter(|(_, p)| p.is_file())
        .collect();
    parts.push(tar_part(scratch.path(), "streams.tar.gz", &streams)?);
    let outputs: Vec<(String, PathBuf)> =
        record.outputs.iter().enumerate().map(|(i, d)| (i.to_string(), d.source.clone())).collect();
    parts.push(tar_part(scratch.path(), "outputs.tar.gz", &outputs)?);
    if with_inputs {
        let inputs: Vec<(String, PathBuf)> =
            record.inputs.iter().enumerate().map(|(i, d)| (i.to_string(), d.source.clone())).collect();
        parts.push(tar_part(scratch.path(), "inputs.tar.gz", &inputs)?);
    }
    let empty = part_from_bytes(scratch.path(), "config", MT_EMPTY, EMPTY_JSON)?;

    let (target, o) = location(r, o)?;
    let r = &target;
    let mounts = mount_sources(store, r)?;
    let client = Client::connect_with(r, &o, true, &repositories(&mounts))?;
    // The image first, by digest, so the artifact's subject exists.
    let image_pushed = push_blobs(&client, &image_blobs(store, &resolved), &mounts, t)?;
    let image_mt = media_type_of(&image_manifest);
    client.put_manifest(&resolved.manifest_digest.to_string(), &image_mt, &image_manifest)?;
    let files: Vec<(Digest, PathBuf)> =
        parts.iter().chain([&empty]).map(|p| (p.digest.clone(), p.path.clone())).collect();
    let files_pushed = push_blobs(&client, &files, &BTreeMap::new(), t)?;
    let uploaded = image_pushed.uploaded + files_pushed.uploaded;
    let desc = |p: &Part| {
        json!({"mediaType": p.media_type, "digest": p.digest, "size": p.size,
               "annotations": {ANN_TITLE: p.title}})
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": MT_EMPTY, "digest": empty.digest, "size": empty.size},
        "layers": parts.iter().map(desc).collect::<Vec<_>>(),
        "subject": {"mediaType": image_mt, "digest": resolved.manifest_digest, "size": image_manifest.len()},
        "annotations": {
            "dev.exprun.run.id": id,
            "org.opencontainers.image.created": record.time.created,
        },
    });
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Invalid { what: "artifact manifest".into(), why: e.to_string() })?;
    let tag = r.tag.clone().unwrap_or_else(|| format!("run-{}", &id[..12.min(id.len())]));
    let digest = client.put_manifest(&tag, MT_MANIFEST, &bytes)?;
    Ok(PushedRun { run_id: id, digest, tag, uploaded })
}

fn part_from_bytes(
    dir: &Path,
    title: &'static str,
    media_type: &'static str,
    bytes: &[u8],
) -> Result<Part, Error> {
    let path = dir.join(title);
    fs::write(&path, bytes).map_err(|e| Error::Io { op: "write", path: path.clone(), source: e })?;
    Ok(Part { title, media_type, path, digest: Digest::of_bytes(bytes), size: bytes.len() as u64 })
}

/// A gzip'd tar of `(name, host path)` pairs: each file or directory tree under
/// its name, entries sorted, with a fixed gzip header.
fn tar_part(dir: &Path, title: &'static str, items: &[(String, PathBuf)]) -> Result<Part, Error> {
    let path = dir.join(title);
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e: io::Error| Error::Io { op: "archive", path: p, source: e }
    };
    let file = File::create(&path).map_err(io_err(&path))?;
    let hashing = HashingWriter::new(io::BufWriter::new(file));
    let gz = GzBuilder::new().mtime(0).write(hashing, Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    for (name, src) in items {
        if !src.exists() {
            return Err(Error::Invalid {
                what: format!("{title}: {}", src.display()),
                why: "it is gone from this host, so the run cannot be pushed whole".into(),
            });
        }
        append_sorted(&mut tar, src, Path::new(name)).map_err(io_err(src))?;
    }
    let gz = tar.into_inner().map_err(io_err(&path))?;
    let hashing = gz.finish().map_err(io_err(&path))?;
    let (buf, digest, size) = hashing.finish();
    buf.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).map_err(io_err(&path))?;
    Ok(Part { title, media_type: MT_FILES, path, digest, size })
}

fn append_sorted<W: Write>(tar: &mut tar::Builder<W>, src: &Path, name: &Path) -> io::Result<()> {
    tar.append_path_with_name(src, name)?;
    if fs::symlink_metadata(src)?.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(src)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            append_sorted(tar, &e.path(), &name.join(e.file_name()))?;
        }
    }
    Ok(())
}

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
                m.artifact_type.unwrap_or_default()
            ),
        });
    }
    let layer = |title: &str| {
        m.layers.iter().find(|l| l.annotations.get(ANN_TITLE).map(String::as_str) == Some(title))
    };
    let rec = layer("record.json")
        .ok_or_else(|| Error::Invalid { what: what.clone(), why: "it has no record.json".into() })?;
    let record_bytes = client.small_blob(&rec.digest, rec.size)?;
    let mut record: RunRecord = serde_json::from_slice(&record_bytes)
        .map_err(|e| Error::Invalid { what: format!("record.json of {what}"), why: e.to_string() })?;
    if record.run_id.len() < 16 || !record.run_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid {
            what: format!("record.json of {what}"),
            why: format!("run id {:?} is not hex", record.run_id),
        });
    }
    let dir = root.runs_dir().join(&record.run_id);
    let record_path = dir.join("record.json");
    let created = match fs::read(&record_path) {
        Ok(local) if Digest::of_bytes(&local) != rec.digest => {
            return Err(Error::Invalid {
                what: record_path.display().to_string(),
                why: format!(
                    "a different record of run {} is already here; refusing to replace it",
                    record.run_id
                ),
            })
        }
        Ok(_) => false,
        Err(_) => {
            fs::create_dir_all(&dir).map_err(|e| Error::Io {
                op: "create directory",
                path: dir.clone(),
                source: e,
            })?;
            let tmp = dir.join(".record.json.tmp");
            fs::write(&tmp, &record_bytes)
                .and_then(|()| fs::rename(&tmp, &record_path))
                .map_err(|e| Error::Io { op: "write", path: record_path.clone(), source: e })?;
            true
        }
    };
    // A run that could not be fetched whole (its files, its image) is not
    // left half-made: what this call stored goes again.
    let fetched = fetch_files_and_image(store, r, o, &client, &m, &record, &dir);
    if fetched.is_err() && created {
        let _ = fs::remove_dir_all(&dir);
    }
    fetched?;
    localise(&mut record, &root.runs_dir());
    Ok(record)
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
    let layer = |title: &str| {
        m.layers.iter().find(|l| l.annotations.get(ANN_TITLE).map(String::as_str) == Some(title))
    };
    let scratch = store.scratch()?;
    let files = dir.join("artifact");
    for title in ["streams.tar.gz", "outputs.tar.gz", "inputs.tar.gz"] {
        let Some(l) = layer(title) else { continue };
        let dest = files.join(title.trim_end_matches(".tar.gz"));
        if dest.exists() {
            continue;
        }
        let blob = scratch.path().join(title);
        client.download(&l.digest, l.size, &blob, &|_| {})?;
        unpack(&blob, &dest, scratch.path(), Limits::default())?;
    }
    for s in ["stdout", "stderr"] {
        let (from, to) = (files.join("streams").join(s), dir.join(s));
        if from.is_file() && !to.exists() {
            let _ = fs::copy(&from, &to);
        }
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

/// For a run fetched from an artifact: read its inputs (for a replay) and its
/// outputs (for `verify`'s comparisons) from the artifact's copies under
/// `runs/<id>/artifact/` rather than from the paths of the host it ran on. A
/// run recorded here has no such copies and is left as it is.
pub fn localise(record: &mut RunRecord, runs_dir: &Path) {
    let files = runs_dir.join(&record.run_id).join("artifact");
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

/// Unpack a files tar into `dest` (made whole in `scratch`, then renamed). The
/// tar crate keeps every path inside; `limits` bound what it may expand to, as
/// for an image layer.
fn unpack(blob: &Path, dest: &Path, scratch: &Path, limits: Limits) -> Result<(), Error> {
    let staging = scratch.join("unpacked");
    let _ = fs::remove_dir_all(&staging);
    let err = |e: io::Error| Error::Io { op: "unpack", path: blob.to_path_buf(), source: e };
    let f = File::open(blob).map_err(err)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(f)));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    fs::create_dir_all(&staging).map_err(err)?;
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        entries += 1;
        bytes = bytes.saturating_add(entry.size());
        if entries > limits.max_entries || bytes > limits.max_bytes {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::Invalid {
                what: format!("{} of the artifact", blob.file_name().unwrap_or_default().to_string_lossy()),
                why: format!(
                    "it expands past {} entries or {} bytes, the limits of an image layer; refused",
                    limits.max_entries, limits.max_bytes
                ),
            });
        }
        entry.unpack_in(&staging).map_err(err)?;
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    fs::rename(&staging, dest).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_tar_past_the_limits_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<(String, PathBuf)> = (0..3)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                fs::write(&p, b"data").unwrap();
                (i.to_string(), p)
            })
            .collect();
        let part = tar_part(dir.path(), "outputs.tar.gz", &items).unwrap();
        let small = Limits { max_bytes: 1 << 20, max_entries: 2, ..Limits::default() };
        let e = unpack(&part.path, &dir.path().join("out"), dir.path(), small).unwrap_err().to_string();
        assert!(e.contains("outputs.tar.gz of the artifact") && e.contains("past 2 entries"), "{e}");
        assert!(!dir.path().join("out").exists() && !dir.path().join("unpacked").exists());
        unpack(&part.path, &dir.path().join("out"), dir.path(), Limits::default()).unwrap();
        assert_eq!(fs::read(dir.path().join("out/2")).unwrap(), b"data");
    }
}
