//! `exprun pull`: from a registry into the image store.
//!
//! 1. Log in as the registry asks (see [`super::client`]).
//! 2. Resolve the reference: an index (or docker manifest list) gives the
//!    manifest for the wanted platform; every document is checked by digest.
//! 3. Fetch the config; start a [`crate::image::Fetch`] (shared store lock).
//! 4. Download the layers the store lacks, in parallel, each into its partial
//!    file (resumed from an earlier attempt), verified by digest.
//! 5. The store plans, unpacks and publishes the image as for `image import`,
//!    naming it and keeping its [`Origin`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};

use serde::Deserialize;

use super::client::{Client, ClientOptions};
use super::conf::RegistriesConf;
use super::transfer::{in_parallel, Bars};
use super::Error;
use crate::digest::Digest;
use crate::image::fetch::parse_platform;
use crate::image::manifest::{self, Descriptor, Platform};
use crate::image::reference::RemoteRef;
use crate::image::{Fetched, ImageStore, ImageSummary, Limits, Origin, Progress};

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// `os/arch[/variant]` to pick from an index; the host's when `None`.
    pub platform: Option<String>,
    /// Layers downloaded at once.
    pub jobs: usize,
    /// Draw progress bars (on stderr, when it is a terminal).
    pub progress: bool,
    /// What one layer may expand to.
    pub limits: Limits,
    /// How to reach the registry.
    pub client: ClientOptions,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: None,
            jobs: 3,
            progress: true,
            limits: Limits::default(),
            client: ClientOptions::default(),
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image as stored.
    pub summary: ImageSummary,
    /// Where it came from.
    pub origin: Origin,
    /// Layers downloaded (or resumed), and bytes received for them.
    pub layers_fetched: usize,
    /// Layers the store already had.
    pub layers_reused: usize,
}

/// Pull `r` into `store`: from the first of the places registries.conf gives
/// for it (its mirrors, then its location) that serves it whole. What one
/// place fails to serve is tried at the next; blobs already verified stay.
pub fn pull(store: &ImageStore, r: &RemoteRef, o: &PullOptions) -> Result<Pulled, Error> {
    let endpoints = RegistriesConf::load()?.endpoints(r, true)?;
    for (i, ep) in endpoints.iter().enumerate() {
        let mut client_options = ClientOptions {
            insecure_tls: o.client.insecure_tls || ep.insecure,
            http_fallback: ep.insecure,
            ..o.client.clone()
        };
        client_options.token_realms.extend(ep.token_realms.iter().cloned());
        match (pull_from(store, r, &ep.r, &client_options, o), endpoints.get(i + 1)) {
            (Err(e), Some(next)) if from_the_registry(&e) => {
                let what = if ep.mirror { "mirror" } else { "registry" };
                // The error may quote what the registry answered.
                let e = crate::record::lines_for_terminal(&e.to_string()).into_owned();
                eprintln!("exprun: {what} {}: {e}; trying {}", ep.r.registry, next.r.registry);
            }
            (result, _) => return result,
        }
    }
    Err(Error::Invalid { what: r.to_string(), why: "registries.conf gives no place to pull it from".into() })
}

/// Whether `e` is the registry's doing (another may serve better), not the
/// store's or the caller's.
fn from_the_registry(e: &Error) -> bool {
    matches!(
        e,
        Error::Transport { .. }
            | Error::Timeout { .. }
            | Error::Redirect { .. }
            | Error::Status { .. }
            | Error::Auth { .. }
            | Error::NotFound { .. }
            | Error::DigestMismatch { .. }
            | Error::Invalid { .. }
    )
}

/// Pull `r` from `at` (the same, or a mirror or another location of it).
fn pull_from(
    store: &ImageStore,
    r: &RemoteRef,
    at: &RemoteRef,
    client_options: &ClientOptions,
    o: &PullOptions,
) -> Result<Pulled, Error> {
    let client = Client::connect(at, client_options, false)?;
    let wanted = o.platform.as_deref().map(|p| parse_platform(p, "--platform")).transpose()?;
    let top = client.manifest(&r.reference())?;
    let resolved_digest = top.digest.clone();
    let (doc, platform) = if manifest::is_index(&top.media_type) {
        let what = format!("index {} of {r}", top.digest);
        let index = manifest::parse_index(&top.bytes, &what)?;
        let chosen = choose(&index.manifests, wanted.as_ref()).ok_or_else(|| Error::Invalid {
            what,
            why: format!(
                "no image for {}; the index has {}. Choose one with --platform",
                wanted.as_ref().map_or_else(manifest::host_platform, |p| p.to_string()),
                listed(&index.manifests)
            ),
        })?;
        let doc = client.manifest(&chosen.digest.to_string())?;
        (doc, chosen.platform.as_ref().map(|p| p.to_string()))
    } else {
        (top, None)
    };
    let what = format!("manifest {} of {r}", doc.digest);
    if !manifest::is_manifest(&doc.media_type) {
        return Err(Error::Invalid {
            what,
            why: format!("media type {:?} is not an image manifest or index", doc.media_type),
        });
    }
    let m = manifest::parse_manifest(&doc.bytes, &what)?;
    let config = client.small_blob(&m.config.digest, m.config.size)?;

    let mut fetch = store.begin_fetch()?;
    let mut missing: Vec<&Descriptor> = Vec::new();
    let mut reused = 0;
    for l in &m.layers {
        if missing.iter().any(|x| x.digest == l.digest) {
            continue;
        }
        if fetch.has_blob(&l.digest, l.size)? {
            reused += 1;
        } else {
            missing.push(l);
        }
    }
    let budget = fetch.budget(o.limits);
    let done = download_all(&client, &fetch, &missing, &diff_ids(&config, &m.layers), &budget, o)?;
    let fetched = done.0.len();
    reused += missing.len() - fetched;
    let (done, unpacked) = done;
    for got in &done {
        fetch.add_blob(got.digest.clone(), &got.blob);
    }
    for (diff_id, dir) in unpacked {
        fetch.add_unpacked(diff_id, dir);
    }
    let fetched_from = (at.registry != r.registry || at.repository != r.repository)
        .then(|| format!("{}/{}", at.registry, at.repository));
    let origin = Origin { reference: r.to_string(), resolved_digest, platform, fetched_from };
    let summary = fetch.finish(
        Fetched {
            manifest_digest: doc.digest,
            manifest: doc.bytes,
            config,
            name: r.store_name(),
            origin: origin.clone(),
            platform: o.platform.clone(),
        },
        &budget,
        if o.progress { Progress::Auto } else { Progress::Hidden },
    )?;
    Ok(Pulled { summary, origin, layers_fetched: fetched, layers_reused: reused })
}

/// The index entry for `wanted` (the host when `None`): same OS and
/// architecture, and the same variant when one is asked for.
fn choose<'a>(entries: &'a [Descriptor], wanted: Option<&Platform>) -> Option<&'a Descriptor> {
    entries.iter().filter(|d| manifest::is_manifest(&d.media_type)).find(|d| {
        let Some(p) = &d.platform else { return false };
        match wanted {
            None => p.matches_host(),
            Some(w) => {
                p.os == w.os
                    && p.architecture == w.architecture
                    && w.variant.as_ref().is_none_or(|v| p.variant.as_ref() == Some(v))
            }
        }
    })
}

fn listed(entries: &[Descriptor]) -> String {
    let v: Vec<String> = entries.iter().filter_map(|d| d.platform.as_ref().map(|p| p.to_string())).collect();
    if v.is_empty() {
        "no platforms".into()
    } else {
        v.join(", ")
    }
}

/// Each layer blob's diff_id, as the config lists them (verified with the
/// config's digest); empty when they do not line up, and the store's checks
/// then say why.
fn diff_ids(config: &[u8], layers: &[Descriptor]) -> BTreeMap<Digest, Digest> {
    #[derive(Deserialize)]
    struct Config {
        rootfs: Rootfs,
    }
    #[derive(Deserialize)]
    struct Rootfs {
        diff_ids: Vec<Digest>,
    }
    match serde_json::from_slice::<Config>(config) {
        Ok(c) if c.rootfs.diff_ids.len() == layers.len() => {
            layers.iter().map(|l| l.digest.clone()).zip(c.rootfs.diff_ids).collect()
        }
        _ => BTreeMap::new(),
    }
}

/// A layer blob downloaded and verified, taken into the fetch.
struct Got {
    digest: Digest,
    blob: PathBuf,
}

/// What [`download_all`] got: the blobs, and the layers unpacked meanwhile
/// (diff_id, directory).
type Downloaded = (Vec<Got>, Vec<(Digest, PathBuf)>);

/// Download `layers`, `o.jobs` at a time. Each verified layer that `diff_ids`
/// names is handed to one of a pool of unpacking threads (one per CPU), so
/// that unpacking overlaps the downloads still running. A layer that a pull
/// running at the same time stored while this one waited for its partial
/// file is left out.
fn download_all(
    client: &Client,
    fetch: &crate::image::Fetch<'_>,
    layers: &[&Descriptor],
    diff_ids: &BTreeMap<Digest, Digest>,
    budget: &crate::image::Budget,
    o: &PullOptions,
) -> Result<Downloaded, Error> {
    let bars = Bars::new(o.progress);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = mpsc::channel::<(Digest, Digest, PathBuf)>();
    let rx = Mutex::new(rx);
    let unpack_error: Mutex<Option<Error>> = Mutex::new(None);
    let (downloaded, unpacked) = std::thread::scope(|s| {
        let unpackers: Vec<_> = (0..cpus.min(layers.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let job = rx.lock().map_err(|_| mpsc::RecvError).and_then(|r| r.recv());
                        let Ok((layer, diff_id, blob)) = job else { return done };
                        if unpack_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                            continue;
                        }
                        match fetch.unpack(&layer, &diff_id, &blob, budget) {
                            Ok(Some(dir)) => done.push((diff_id, dir)),
                            Ok(None) => {}
                            Err(e) => {
                                if let Ok(mut first) = unpack_error.lock() {
                                    first.get_or_insert(e.into());
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let downloaded = in_parallel(layers, o.jobs, |l| {
            let bar = bars.add(&l.digest, l.size);
            let tick = |n: u64| {
                if let Some(b) = &bar {
                    b.inc(n);
                }
            };
            let partial = fetch.partial(&l.digest)?;
            if fetch.has_blob(&l.digest, l.size)? {
                return Ok(None);
            }
            client.download(&l.digest, l.size, &partial.path, &tick)?;
            if let Some(b) = &bar {
                b.finish();
            }
            let blob = fetch.take(&l.digest, partial)?;
            if let Some(diff_id) = diff_ids.get(&l.digest) {
                let _ = tx.send((l.digest.clone(), diff_id.clone(), blob.clone()));
            }
            Ok(Some(Got { digest: l.digest.clone(), blob }))
        });
        drop(tx);
        let unpacked: Vec<(Digest, PathBuf)> =
            unpackers.into_iter().flat_map(|u| u.join().unwrap_or_default()).collect();
        (downloaded, unpacked)
    });
    let downloaded = downloaded?;
    if let Some(e) = unpack_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok((downloaded.into_iter().flatten().collect(), unpacked))
}
