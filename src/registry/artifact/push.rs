//! `exprun push --run RUN REF`: plan the artifact, list what it holds, upload.
//!
//! [`plan_push`] writes every layer into the store's scratch before anything
//! is sent: the record (host details reduced unless kept, see `reduce`), the
//! kept streams (their bytes checked against the record), the outputs exactly
//! as recorded (their listing's digest must be the recorded one), and the
//! inputs only when asked. Each file is looked at for secrets as it is
//! archived. [`PushPlan::listing`] says all of it; [`PushPlan::refusal`] is
//! the error a plan holding secrets gets unless they are allowed; [`upload`]
//! sends the image, then the layers, then the manifest.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::archive::{Listed, TarPart};
use super::reduce::{reduce, HostDirs};
use super::{Error, ANN_TITLE, ARTIFACT_TYPE, EMPTY_JSON, MT_EMPTY, MT_FILES, MT_MANIFEST, MT_RECORD};
use crate::digest::Digest;
use crate::image::reference::RemoteRef;
use crate::image::{ImageStore, ResolvedImage, TmpDir};
use crate::record::files::size_text;
use crate::record::{for_terminal, RunRecord};
use crate::registry::client::{Client, ClientOptions};
use crate::registry::conf::location;
use crate::registry::push::{image_blobs, media_type_of, mount_sources, push_blobs, repositories};
use crate::registry::transfer::Transfer;
use crate::state::Root;

/// What to put into the artifact.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushOptions {
    /// Upload the inputs too (`--include-inputs`).
    pub include_inputs: bool,
    /// Upload the record as it is, host paths and all (`--keep-host-details`).
    pub keep_host_details: bool,
}

/// One layer of the artifact, written in scratch.
#[derive(Debug)]
pub struct Layer {
    /// Its title (`record.json`, `outputs.tar.gz`, ...).
    pub title: &'static str,
    media_type: &'static str,
    path: PathBuf,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size.
    pub size: u64,
    /// The files in it (none for record.json).
    pub files: Vec<Listed>,
}

/// An artifact ready to upload: its layers in scratch, and what to say about them.
pub struct PushPlan {
    /// The run.
    pub run_id: String,
    /// The layers, record.json first.
    pub layers: Vec<Layer>,
    created: String,
    empty: Layer,
    image: ResolvedImage,
    image_manifest: Vec<u8>,
    /// Inputs left out: how many paths, files and bytes the record has.
    withheld_inputs: Option<(usize, u64, u64)>,
    /// What the record's shared copy replaced (empty with --keep-host-details).
    replaced: Vec<String>,
    /// Where the shared record still names the caller or the host.
    mentions: Vec<String>,
    keep_host_details: bool,
    _scratch: TmpDir,
}

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

/// Plan pushing run `run` of `root` (with its image, from `store`).
pub fn plan_push(root: &Root, store: &ImageStore, run: &str, opts: &PushOptions) -> Result<PushPlan, Error> {
    let id = root.resolve_run(run)?;
    let dir = root.runs_dir().join(&id);
    let record_path = dir.join("record.json");
    let record = RunRecord::read(&record_path)?;
    // The record whole, as exprun writes it pretty: its shared parts are this root's objects.
    let mut record_bytes = serde_json::to_vec_pretty(&record).map_err(|e| Error::Io {
        op: "serialise",
        path: record_path.clone(),
        source: std::io::Error::other(e),
    })?;
    record_bytes.push(b'\n');
    let not =
        |why: &str| Error::Invalid { what: format!("run {}", &id[..12.min(id.len())]), why: why.into() };
    let request = record.request.as_ref().ok_or_else(|| {
        not("it has no recorded request (an OCI bundle run, or one whose exprun died); only \
             runs of `exprun run` can be replayed elsewhere")
    })?;
    let image = record.image.as_ref().ok_or_else(|| not("its record names no image"))?;
    let resolved = store.resolve(&image.manifest_digest.to_string())?;
    let image_manifest = store.read_blob(&resolved.manifest_digest)?;

    let scratch = store.scratch()?;
    let (shared, replaced, mentions) = if opts.keep_host_details {
        (record_bytes, Vec::new(), Vec::new())
    } else {
        let runtime = root.containers_dir().parent().map(Path::to_path_buf).unwrap_or_default();
        let r = reduce(&record, &record_bytes, &HostDirs::of_caller(root.dir(), &runtime))?;
        (r.bytes, r.replaced, r.mentions)
    };
    let mut layers = vec![layer_from_bytes(scratch.path(), "record.json", MT_RECORD, &shared)?];

    let mut streams = TarPart::create(scratch.path(), "streams.tar.gz")?;
    for (name, summary) in [("stdout", &record.stdout), ("stderr", &record.stderr)] {
        let path = dir.join(name);
        if fs::symlink_metadata(&path).is_err() {
            continue;
        }
        // Only a stream kept whole can be checked byte for byte.
        let whole = summary.as_ref().filter(|s| s.kept == Some(s.bytes)).map(|s| &s.digest);
        streams.add_file(name, &path, whole)?;
    }
    layers.push(files_layer(streams)?);

    let mut outputs = TarPart::create(scratch.path(), "outputs.tar.gz")?;
    for (i, d) in record.outputs.iter().enumerate() {
        let what = format!("output {}", d.destination.display());
        let tree = d.tree.as_ref().ok_or_else(|| Error::Invalid {
            what: what.clone(),
            why: format!(
                "the record has no digest of it ({}), so it cannot be pushed as recorded",
                d.error.as_deref().unwrap_or("not digested")
            ),
        })?;
        outputs.add_tree(&i.to_string(), &d.source, &what, tree)?;
    }
    layers.push(files_layer(outputs)?);

    let mut withheld_inputs = None;
    if opts.include_inputs {
        let mut inputs = TarPart::create(scratch.path(), "inputs.tar.gz")?;
        for (i, (m, d)) in request.inputs.iter().zip(&record.inputs).enumerate() {
            let what = format!("input {}", m.destination.display());
            let tree = d.tree.as_ref().ok_or_else(|| Error::Invalid {
                what: what.clone(),
                why: "the record has no digest of it, so it cannot be pushed as recorded".into(),
            })?;
            inputs.add_tree(&i.to_string(), &m.source, &what, tree)?;
        }
        layers.push(files_layer(inputs)?);
    } else if !record.inputs.is_empty() {
        let trees = record.inputs.iter().filter_map(|d| d.tree.as_ref());
        let (files, bytes) = trees.fold((0, 0), |(f, b), t| (f + t.files, b + t.bytes));
        withheld_inputs = Some((record.inputs.len(), files, bytes));
    }
    let empty = layer_from_bytes(scratch.path(), "config", MT_EMPTY, EMPTY_JSON)?;
    Ok(PushPlan {
        run_id: id,
        layers,
        created: record.time.created.clone(),
        empty,
        image: resolved,
        image_manifest,
        withheld_inputs,
        replaced,
        mentions,
        keep_host_details: opts.keep_host_details,
        _scratch: scratch,
    })
}

fn layer_from_bytes(
    dir: &Path,
    title: &'static str,
    media_type: &'static str,
    bytes: &[u8],
) -> Result<Layer, Error> {
    let path = dir.join(title);
    fs::write(&path, bytes).map_err(|e| Error::Io { op: "write", path: path.clone(), source: e })?;
    Ok(Layer {
        title,
        media_type,
        path,
        digest: Digest::of_bytes(bytes),
        size: bytes.len() as u64,
        files: Vec::new(),
    })
}

fn files_layer(part: TarPart) -> Result<Layer, Error> {
    let title = part.title();
    let w = part.finish()?;
    Ok(Layer { title, media_type: MT_FILES, path: w.path, digest: w.digest, size: w.size, files: w.files })
}

/// Files listed one by one in a layer; the rest are counted.
const LISTED: usize = 20;

fn plural(n: u64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

impl PushPlan {
    /// The files that hold secrets: (layer, file, why).
    pub fn secrets(&self) -> Vec<(&'static str, &str, &str)> {
        self.layers
            .iter()
            .flat_map(|l| {
                l.files.iter().filter_map(move |f| Some((l.title, f.name.as_str(), f.secret.as_deref()?)))
            })
            .collect()
    }

    /// What the artifact holds, for people: each layer with its files and
    /// sizes, what holds secrets, and what was left out or replaced.
    pub fn listing(&self) -> String {
        let mut out = format!("run {} as an artifact:\n", &self.run_id[..12.min(self.run_id.len())]);
        for l in &self.layers {
            let mut head = format!("  {:<15} {}", l.title, size_text(l.size));
            if l.title == "record.json" {
                if self.keep_host_details {
                    head.push_str(", host details kept (--keep-host-details)");
                } else if !self.replaced.is_empty() {
                    head.push_str(&format!(
                        ", host details replaced by {}/...: {} (--keep-host-details keeps them)",
                        super::WITHHELD,
                        self.replaced.join(", ")
                    ));
                }
            } else {
                let bytes: u64 = l.files.iter().map(|f| f.size).sum();
                head.push_str(&format!(
                    " compressed: {}, {}{}",
                    plural(l.files.len() as u64, "file"),
                    size_text(bytes),
                    if l.title == "streams.tar.gz" { "" } else { ", as recorded" }
                ));
            }
            out.push_str(&head);
            out.push('\n');
            let mut shown = 0;
            let mut rest = (0u64, 0u64);
            for f in &l.files {
                if shown < LISTED || f.secret.is_some() {
                    shown += 1;
                    let flag = f.secret.as_ref().map(|w| format!("  SECRET {w}")).unwrap_or_default();
                    out.push_str(&format!("      {}  {}{flag}\n", for_terminal(&f.name), size_text(f.size)));
                } else {
                    rest = (rest.0 + 1, rest.1 + f.size);
                }
            }
            if rest.0 > 0 {
                out.push_str(&format!(
                    "      ... and {} ({})\n",
                    plural(rest.0, "more file"),
                    size_text(rest.1)
                ));
            }
        }
        if let Some((paths, files, bytes)) = self.withheld_inputs {
            out.push_str(&format!(
                "  {:<15} not uploaded: {}, {}, {} (--include-inputs uploads them; a replay elsewhere \
                 then needs them at hand)\n",
                "inputs",
                plural(paths as u64, "input"),
                plural(files, "file"),
                size_text(bytes)
            ));
        }
        let image_bytes: u64 = self.image.layers.iter().map(|l| l.size).sum();
        out.push_str(&format!(
            "  {:<15} {} ({}, {}), unless the registry has it\n",
            "image",
            self.image.manifest_digest,
            plural(self.image.layers.len() as u64, "layer"),
            size_text(image_bytes)
        ));
        for m in &self.mentions {
            out.push_str(&format!(
                "  note: the shared record still names the caller or this host: {} (kept: the command saw it, or it was chosen)\n",
                for_terminal(m)
            ));
        }
        out
    }

    /// Why this plan must not be uploaded unless secrets are allowed: some
    /// file it would upload holds secrets.
    pub fn refusal(&self) -> Option<Error> {
        let secrets = self.secrets();
        if secrets.is_empty() {
            return None;
        }
        let named: Vec<String> =
            secrets.iter().map(|(l, f, why)| format!("{l} {} ({why})", for_terminal(f))).collect();
        Some(Error::Invalid {
            what: format!("run {}", &self.run_id[..12.min(self.run_id.len())]),
            why: format!(
                "{} it would upload {} secrets: {}; take them out of the run's files (and run it \
                 again), or pass --allow-secrets to upload them anyway",
                plural(secrets.len() as u64, "file"),
                if secrets.len() == 1 { "holds" } else { "hold" },
                named.join(", ")
            ),
        })
    }
}

/// Upload `plan` to `r`: the image first (by digest, so the artifact's
/// subject exists), then the layers, then the manifest.
pub fn upload(
    plan: &PushPlan,
    store: &ImageStore,
    r: &RemoteRef,
    o: &ClientOptions,
    t: &Transfer,
) -> Result<PushedRun, Error> {
    let (target, o) = location(r, o)?;
    let r = &target;
    let mounts = mount_sources(store, r)?;
    let client = Client::connect_with(r, &o, true, &repositories(&mounts))?;
    let image = &plan.image;
    let image_pushed = push_blobs(&client, &image_blobs(store, image), &mounts, t)?;
    let image_mt = media_type_of(&plan.image_manifest);
    client.put_manifest(&image.manifest_digest.to_string(), &image_mt, &plan.image_manifest)?;
    let files: Vec<(Digest, PathBuf)> =
        plan.layers.iter().chain([&plan.empty]).map(|p| (p.digest.clone(), p.path.clone())).collect();
    let files_pushed = push_blobs(&client, &files, &BTreeMap::new(), t)?;
    let uploaded = image_pushed.uploaded + files_pushed.uploaded;
    let desc = |p: &Layer| {
        json!({"mediaType": p.media_type, "digest": p.digest, "size": p.size,
               "annotations": {ANN_TITLE: p.title}})
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": MT_EMPTY, "digest": plan.empty.digest, "size": plan.empty.size},
        "layers": plan.layers.iter().map(desc).collect::<Vec<_>>(),
        "subject": {"mediaType": image_mt, "digest": image.manifest_digest, "size": plan.image_manifest.len()},
        "annotations": {
            "dev.exprun.run.id": plan.run_id,
            "org.opencontainers.image.created": plan.created,
        },
    });
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Invalid { what: "artifact manifest".into(), why: e.to_string() })?;
    let id = &plan.run_id;
    let tag = r.tag.clone().unwrap_or_else(|| format!("run-{}", &id[..12.min(id.len())]));
    let digest = client.put_manifest(&tag, MT_MANIFEST, &bytes)?;
    Ok(PushedRun { run_id: id.clone(), digest, tag, uploaded })
}
