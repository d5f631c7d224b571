//! `import`: from a source (OCI layout directory, oci-archive, docker-archive) to
//! images in the store.
//!
//! 1. Under the shared store lock (so no gc deletes what we add): clean stale tmp
//!    dirs; for an archive, stream it once into our tmp dir (see `archive`).
//! 2. Plan: read and verify the index, manifests and configs (small JSON), pick
//!    the host platform, check media types, sizes and digests, and decide names.
//!    Nothing is stored yet.
//! 3. Ingest, per image: every blob verified and staged in tmp, every missing
//!    layer unpacked there (diff_id checked); only then all are renamed into
//!    blobs/ and layers/.
//! 4. Publish, under the exclusive lock: check that everything is still there,
//!    then update refs.json.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

use super::archive::{self, Extracted};
use super::manifest::{self, Descriptor, Manifest, ANN_CONTAINERD_NAME, ANN_REF_NAME};
use super::reference::{self, DEFAULT_TAG};
use super::store::{self, RefEntry, Store, TmpDir, MAX_JSON_BLOB};
use super::unpack::{self, Budget, Limits};
use super::{Error, ImageSummary, Origin, Progress, Result};
use crate::digest::Digest;

/// Where an image's files come from.
pub(crate) enum Layout {
    /// An OCI image layout directory, read in place.
    Dir(PathBuf),
    /// An archive streamed into our tmp dir.
    Archive(Extracted),
    /// Blobs fetched from a registry, verified, by digest (see `fetch`); the path
    /// is the reference they came from, for messages.
    Fetched(PathBuf, BTreeMap<Digest, PathBuf>),
}

/// One image to import, verified but not yet stored.
pub(crate) struct Plan {
    pub manifest_digest: Digest,
    pub manifest: Vec<u8>,
    pub config_digest: Digest,
    pub config: Vec<u8>,
    pub created: Option<String>,
    pub diff_ids: Vec<Digest>,
    /// Each layer's descriptor and its path in the source.
    pub layers: Vec<(Descriptor, String)>,
    pub names: Vec<String>,
}

impl Plan {
    /// Check a parsed manifest against its (verified) config: platform, rootfs.
    pub fn build(
        manifest_digest: Digest,
        manifest: Vec<u8>,
        m: Manifest,
        config: Vec<u8>,
        layer_paths: Vec<String>,
        what: &str,
        platform: Option<&manifest::Platform>,
    ) -> Result<Self> {
        let cwhat = format!("config {} of {what}", m.config.digest);
        let parsed: oci_spec::image::ImageConfiguration = manifest::parse_json(&config, &cwhat)?;
        manifest::check_config_platform(&parsed, &cwhat, platform)?;
        let diff_ids = manifest::diff_ids(&parsed, m.layers.len(), &cwhat)?;
        Ok(Self {
            manifest_digest,
            manifest,
            config_digest: m.config.digest,
            config,
            created: parsed.created().clone(),
            diff_ids,
            layers: m.layers.into_iter().zip(layer_paths).collect(),
            names: Vec::new(),
        })
    }

    /// The same plan with these names.
    pub fn named(self, names: Vec<String>) -> Self {
        Self { names, ..self }
    }

    fn blobs(&self) -> impl Iterator<Item = &Digest> {
        [&self.manifest_digest, &self.config_digest]
            .into_iter()
            .chain(self.layers.iter().map(|(d, _)| &d.digest))
    }

    pub fn summaries(&self) -> Vec<ImageSummary> {
        let size = self.manifest.len() as u64
            + self.config.len() as u64
            + self.layers.iter().map(|(d, _)| d.size).sum::<u64>();
        let row = |name: Option<String>| ImageSummary {
            name,
            manifest_digest: self.manifest_digest.clone(),
            config_digest: self.config_digest.clone(),
            size,
            created: self.created.clone(),
            layers: self.layers.len(),
        };
        if self.names.is_empty() {
            vec![row(None)]
        } else {
            self.names.iter().map(|n| row(Some(n.clone()))).collect()
        }
    }
}

pub(crate) fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

impl Layout {
    pub fn location(&self) -> &Path {
        match self {
            Layout::Dir(p) => p,
            Layout::Archive(x) => &x.archive,
            Layout::Fetched(from, _) => from,
        }
    }

    /// A small file of the source (at most [`MAX_JSON_BLOB`] + 1 bytes), or
    /// `None` if it is not there.
    pub fn read_small(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Layout::Dir(dir) => {
                let path = dir.join(rel);
                let mut bytes = Vec::new();
                match File::open(&path).and_then(|f| f.take(MAX_JSON_BLOB + 1).read_to_end(&mut bytes)) {
                    Ok(_) => Ok(Some(bytes)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("read", &path, e)),
                }
            }
            Layout::Archive(x) => x.read(rel),
            Layout::Fetched(..) => Ok(None),
        }
    }

    /// A JSON blob (index, manifest, config), checked against its descriptor.
    pub fn read_blob(&self, desc: &Descriptor, kind: &str) -> Result<Vec<u8>> {
        let what = format!("{kind} {} in {}", desc.digest, self.location().display());
        if desc.size > MAX_JSON_BLOB {
            return Err(Error::Invalid {
                what,
                why: format!(
                    "the descriptor says {} bytes, over the {MAX_JSON_BLOB}-byte limit for JSON",
                    desc.size
                ),
            });
        }
        let bytes = self
            .read_small(&blob_path(&desc.digest))?
            .ok_or_else(|| Error::BlobMissing { what: what.clone() })?;
        check_blob(&what, &desc.digest, desc.size, &Digest::of_bytes(&bytes), bytes.len() as u64)?;
        Ok(bytes)
    }

    /// Verify blob `d` (at `rel` in the source) and stage it in our tmp dir, ready
    /// to be renamed into the store; `None` if the store already has it.
    fn stage(
        &self,
        store: &Store,
        tmp: &mut TmpDir,
        rel: &str,
        d: &Digest,
        size: u64,
        meter: &Meter,
    ) -> Result<Option<PathBuf>> {
        let what = || format!("blob {d} in {}", self.location().display());
        if let Some(have) = store.blob_size(d)? {
            // Stored blobs were verified when they landed; only the size can lie.
            if have != size {
                return Err(Error::SizeMismatch { what: what(), declared: size, found: have.to_string() });
            }
            return Ok(None);
        }
        match self {
            Layout::Dir(dir) => {
                let path = dir.join(rel);
                let f = File::open(&path).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => Error::BlobMissing { what: what() },
                    _ => Error::io("open", &path, e),
                })?;
                meter.add(size);
                let (tmp_file, found, len) =
                    tmp.copy_hashed(&mut meter.reader(f), size.saturating_add(1), &path)?;
                check_blob(&what(), d, size, &found, len)?;
                Ok(Some(tmp_file))
            }
            Layout::Archive(x) => {
                let f = x.file(rel).ok_or_else(|| Error::BlobMissing { what: what() })?;
                check_blob(&what(), d, size, &f.digest, f.size)?;
                Ok(Some(f.path.clone()))
            }
            // Verified by digest and size as they were downloaded.
            Layout::Fetched(_, blobs) => {
                blobs.get(d).cloned().map(Some).ok_or_else(|| Error::BlobMissing { what: what() })
            }
        }
    }
}

/// Size first (a longer blob is reported as "more than"), then digest.
fn check_blob(what: &str, expected: &Digest, size: u64, found: &Digest, len: u64) -> Result<()> {
    if len != size {
        let found = if len > size { format!("more than {size}") } else { len.to_string() };
        return Err(Error::SizeMismatch { what: what.to_string(), declared: size, found });
    }
    if found != expected {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: expected.clone(),
            found: found.clone(),
        });
    }
    Ok(())
}

/// Import everything in `source`. See [`super::ImageStore::import`].
pub(crate) fn import(
    store: &Store,
    source: &Path,
    name: Option<&str>,
    progress: Progress,
    limits: Limits,
) -> Result<Vec<ImageSummary>> {
    let name = name.map(reference::parse_name).transpose()?;
    let source = fs::canonicalize(source).map_err(|e| Error::io("open", source, e))?;
    let is_dir = fs::metadata(&source).map_err(|e| Error::io("stat", &source, e))?.is_dir();
    let meter = Meter::new(progress);

    let shared = store.lock(false)?;
    store.clean_stale_tmp()?;
    let mut tmp = store.new_tmp()?;
    let layout = if is_dir {
        if !source.join("oci-layout").exists() || !source.join("index.json").exists() {
            return Err(Error::NotAnImage {
                path: source,
                why: "a directory must be an OCI image layout (with oci-layout, index.json and blobs/)"
                    .into(),
            });
        }
        Layout::Dir(source.clone())
    } else {
        let x = archive::extract(&source, &mut tmp, &meter)?;
        store.sync()?; // extracted files become blobs by rename: make them durable first
        Layout::Archive(x)
    };
    let mut plans = match &layout {
        Layout::Archive(x) if !(x.has("oci-layout") && x.has("index.json")) => {
            if !x.has("manifest.json") {
                return Err(Error::NotAnImage {
                    path: source,
                    why: "the archive holds neither an OCI layout (oci-layout, index.json) nor a \
                          docker-archive manifest.json"
                        .into(),
                });
            }
            archive::docker_plans(x)?
        }
        _ => oci_plans(&layout, &default_repo(&source))?,
    };
    if let Some(n) = name {
        if plans.len() != 1 {
            return Err(Error::Invalid {
                what: source.display().to_string(),
                why: format!(
                    "--name names one image, but the source holds {}; import without --name",
                    plans.len()
                ),
            });
        }
        plans[0].names = vec![n];
    }
    for plan in &plans {
        let budget = Budget::new(limits, Some(store.root()));
        ingest(store, &mut tmp, &layout, plan, &meter, &budget, &BTreeMap::new())?;
    }
    drop(layout);
    drop(tmp);
    drop(shared);
    meter.finish();
    publish(store, &plans, &source.display().to_string(), None)?;
    Ok(plans.iter().flat_map(Plan::summaries).collect())
}

/// Store one planned image's blobs and layers. Everything is verified (blobs by
/// digest, layers by diff_id) in our tmp dir before anything is renamed into the
/// store, so a refused image leaves nothing behind.
pub(crate) fn ingest(
    store: &Store,
    tmp: &mut TmpDir,
    layout: &Layout,
    plan: &Plan,
    meter: &Meter,
    budget: &Budget,
    ready: &BTreeMap<Digest, PathBuf>,
) -> Result<()> {
    let mut staged: BTreeMap<&Digest, PathBuf> = BTreeMap::new();
    for (desc, rel) in &plan.layers {
        if staged.contains_key(&desc.digest) {
            continue;
        }
        if let Some(path) = layout.stage(store, tmp, rel, &desc.digest, desc.size, meter)? {
            staged.insert(&desc.digest, path);
        }
    }
    // The layers the store lacks and nobody unpacked yet (`ready`: a pull's,
    // as they arrived), each into a tmp dir of its own, up to one per CPU at
    // once: unpacking (decompressing, hashing, writing) is CPU-bound.
    let mut unpacked: Vec<(&Descriptor, &Digest, PathBuf)> = Vec::new();
    let mut todo = Vec::new();
    for ((desc, _), diff_id) in plan.layers.iter().zip(&plan.diff_ids) {
        if unpacked.iter().any(|(_, d, _)| *d == diff_id) || store.layer_path(diff_id).is_dir() {
            continue;
        }
        let dir = match ready.get(diff_id) {
            Some(dir) => dir.clone(),
            None => {
                meter.add(desc.size);
                todo.push(unpacked.len());
                tmp.fresh("layer")
            }
        };
        unpacked.push((desc, diff_id, dir));
    }
    let todo: Vec<&(&Descriptor, &Digest, PathBuf)> = todo.into_iter().map(|i| &unpacked[i]).collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::parallel::in_parallel(&todo, cpus, |(desc, diff_id, dest)| {
        let blob = staged.get(&desc.digest).cloned().unwrap_or_else(|| store.blob_path(&desc.digest));
        let f = File::open(&blob).map_err(|e| Error::io("open", &blob, e))?;
        let reader = io::BufReader::new(meter.reader(f));
        unpack::unpack_layer(reader, &desc.digest, diff_id, dest, budget).inspect_err(|_| {
            let _ = store::remove_all(dest);
        })
    })?;
    if !unpacked.is_empty() {
        store.sync()?; // layer files are not fsync'd one by one
    }
    for (digest, path) in staged {
        store.publish_blob(&path, digest)?;
    }
    for (_, diff_id, dir) in unpacked {
        store.publish_layer(&dir, diff_id)?;
    }
    store.put_blob_bytes(tmp, &plan.config_digest, &plan.config)?;
    store.put_blob_bytes(tmp, &plan.manifest_digest, &plan.manifest)
}

/// Record the images in refs.json, under the exclusive lock. A name moves to the
/// new image (the old one keeps its other names, or becomes untagged).
pub(crate) fn publish(store: &Store, plans: &[Plan], source: &str, origin: Option<&Origin>) -> Result<()> {
    let _lock = store.lock(true)?;
    for plan in plans {
        let missing = plan.blobs().find(|d| !store.blob_path(d).is_file()).map(|d| format!("blob {d}"));
        let missing = missing.or_else(|| {
            plan.diff_ids.iter().find(|d| !store.layer_path(d).is_dir()).map(|d| format!("layer {d}"))
        });
        if let Some(what) = missing {
            return Err(Error::Store {
                path: store.root().to_path_buf(),
                why: format!(
                    "{what} was removed by a concurrent exprun image gc during the import; import again"
                ),
            });
        }
    }
    let mut refs = store.load_refs()?;
    let before = refs.clone();
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    for plan in plans {
        for (d, e) in refs.images.iter_mut() {
            if d != &plan.manifest_digest {
                e.names.retain(|n| !plan.names.contains(n));
            }
        }
        let entry = refs.images.entry(plan.manifest_digest.clone()).or_insert_with(|| RefEntry {
            imported: now.clone(),
            source: source.to_string(),
            names: Vec::new(),
            origin: None,
        });
        if let Some(o) = origin {
            entry.origin = Some(o.clone());
        }
        for n in &plan.names {
            if !entry.names.contains(n) {
                entry.names.push(n.clone());
            }
        }
        entry.names.sort();
    }
    if refs != before {
        store.sync()?;
        store.save_refs(&refs)?;
    }
    Ok(())
}

/// The repository name for images whose ref.name annotation is a bare tag: the
/// source's file name without extension, made a valid name.
fn default_repo(source: &Path) -> String {
    let base = source.file_name().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let mut stem = base.as_str();
    for ext in [".tar.gz", ".tar.zst", ".tgz", ".tar", ".oci"] {
        if let Some(s) = stem.strip_suffix(ext) {
            stem = s;
            break;
        }
    }
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_start_matches(['.', '_', '-']);
    if clean.is_empty() {
        "image".into()
    } else {
        clean.into()
    }
}

/// The name a descriptor's annotations give: containerd's full name, or
/// `ref.name` (a full `name:tag`, or a bare tag to put after `repo`).
fn annotated_name(d: &Descriptor, repo: &str, loc: &Path) -> Result<Option<String>> {
    let bad = |key: &str, v: &str, e: Error| Error::Invalid {
        what: format!("manifest {} in {}", d.digest, loc.display()),
        why: format!("annotation {key}={v:?} is not a usable name ({e}); give one with --name"),
    };
    if let Some(v) = d.annotation(ANN_CONTAINERD_NAME) {
        return reference::parse_name(v).map(Some).map_err(|e| bad(ANN_CONTAINERD_NAME, v, e));
    }
    match d.annotation(ANN_REF_NAME) {
        None => Ok(None),
        Some(v) if v.contains('/') || v.contains(':') => {
            reference::parse_name(v).map(Some).map_err(|e| bad(ANN_REF_NAME, v, e))
        }
        Some(tag) => {
            let tag = if tag.is_empty() { DEFAULT_TAG } else { tag };
            let full = format!("{repo}:{tag}");
            reference::parse_name(&full).map(Some).map_err(|e| bad(ANN_REF_NAME, tag, e))
        }
    }
}

#[derive(Deserialize)]
struct OciLayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

/// Plans for the host-platform images of an OCI layout.
pub(crate) fn oci_plans(layout: &Layout, repo: &str) -> Result<Vec<Plan>> {
    let loc = layout.location();
    let what = |f: &str| format!("{f} in {}", loc.display());
    let bytes =
        layout.read_small("oci-layout")?.ok_or_else(|| Error::BlobMissing { what: what("oci-layout") })?;
    let ol: OciLayoutFile = manifest::parse_json(&bytes, &what("oci-layout"))?;
    if !ol.version.starts_with("1.") {
        return Err(Error::Invalid {
            what: what("oci-layout"),
            why: format!("imageLayoutVersion {:?} is not 1.x", ol.version),
        });
    }
    let bytes =
        layout.read_small("index.json")?.ok_or_else(|| Error::BlobMissing { what: what("index.json") })?;
    let index = manifest::parse_index(&bytes, &what("index.json"))?;
    let mut found: Vec<(Descriptor, Option<String>)> = Vec::new();
    let mut others = BTreeSet::new();
    collect(layout, &index, None, 0, repo, &mut found, &mut others)?;
    if found.is_empty() {
        let why = if others.is_empty() {
            "index.json lists no image manifest".to_string()
        } else {
            format!(
                "no image for {}; the layout has {}",
                manifest::host_platform(),
                others.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        return Err(Error::Invalid { what: loc.display().to_string(), why });
    }
    let mut plans: Vec<Plan> = Vec::new();
    for (desc, name) in found {
        if let Some(p) = plans.iter_mut().find(|p| p.manifest_digest == desc.digest) {
            p.names.extend(name.filter(|n| !p.names.contains(n)));
            continue;
        }
        let bytes = layout.read_blob(&desc, "manifest")?;
        let mwhat = format!("manifest {} in {}", desc.digest, loc.display());
        let m = manifest::parse_manifest(&bytes, &mwhat)?;
        let config = layout.read_blob(&m.config, "config")?;
        let paths = m.layers.iter().map(|l| blob_path(&l.digest)).collect();
        plans.push(
            Plan::build(desc.digest.clone(), bytes, m, config, paths, &mwhat, None)?
                .named(name.into_iter().collect()),
        );
    }
    Ok(plans)
}

/// Walk an index: keep manifests for the host platform (the first one only, in a
/// nested index), recurse into nested indexes, note what else is there.
fn collect(
    layout: &Layout,
    index: &manifest::Index,
    inherited: Option<&str>,
    depth: usize,
    repo: &str,
    found: &mut Vec<(Descriptor, Option<String>)>,
    others: &mut BTreeSet<String>,
) -> Result<()> {
    for d in &index.manifests {
        if let Some(p) = d.platform.as_ref().filter(|p| !p.matches_host()) {
            others.insert(p.to_string());
            continue;
        }
        let name = annotated_name(d, repo, layout.location())?.or(inherited.map(str::to_string));
        if manifest::is_index(&d.media_type) {
            let what = format!("index {} in {}", d.digest, layout.location().display());
            if depth >= 4 {
                return Err(Error::Invalid { what, why: "indexes nested more than 4 deep".into() });
            }
            let inner = manifest::parse_index(&layout.read_blob(d, "index")?, &what)?;
            let before = found.len();
            collect(layout, &inner, name.as_deref(), depth + 1, repo, found, others)?;
            found.truncate(before + usize::from(found.len() > before));
        } else if manifest::is_manifest(&d.media_type) {
            found.push((d.clone(), name));
        } else {
            others.insert(format!("a {} entry", d.media_type));
        }
    }
    Ok(())
}

/// Progress over bytes read from blobs: a bar on stderr if stdout is a terminal.
pub(crate) struct Meter {
    bar: Option<ProgressBar>,
}

impl Meter {
    pub fn new(p: Progress) -> Self {
        let bar = (p == Progress::Auto && io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("importing [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self { bar }
    }

    pub fn add(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc_length(n);
        }
    }

    pub fn reader<R: Read>(&self, inner: R) -> Metered<R> {
        Metered { inner, bar: self.bar.clone() }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A reader that advances the progress bar.
pub(crate) struct Metered<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
