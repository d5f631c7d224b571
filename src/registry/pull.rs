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

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::client::{Client, ClientOptions};
use super::reference::RemoteRef;
use super::Error;
use crate::digest::Digest;
use crate::image::fetch::parse_platform;
use crate::image::manifest::{self, Descriptor, Platform};
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

/// Pull `r` into `store`.
pub fn pull(store: &ImageStore, r: &RemoteRef, o: &PullOptions) -> Result<Pulled, Error> {
    let client = Client::connect(r, &o.client, false)?;
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
    let done = download_all(&client, &fetch, &missing, o)?;
    let fetched = done.len();
    reused += missing.len() - fetched;
    for (d, path) in done {
        fetch.add_blob(d, &path);
    }
    let origin = Origin { reference: r.to_string(), resolved_digest, platform };
    let summary = fetch.finish(
        Fetched {
            manifest_digest: doc.digest,
            manifest: doc.bytes,
            config,
            name: r.store_name(),
            origin: origin.clone(),
            platform: o.platform.clone(),
        },
        o.limits,
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

/// Download `layers` with `o.jobs` threads; returns each blob's verified file,
/// taken into `fetch`. A layer that a pull running at the same time stored
/// while this one waited for its partial file is left out.
fn download_all(
    client: &Client,
    fetch: &crate::image::Fetch<'_>,
    layers: &[&Descriptor],
    o: &PullOptions,
) -> Result<Vec<(Digest, std::path::PathBuf)>, Error> {
    let bars = (o.progress && std::io::stderr().is_terminal())
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let queue = Mutex::new(layers.iter().rev().copied().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..o.jobs.clamp(1, 16).min(layers.len().max(1)) {
            s.spawn(|| loop {
                if first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    return;
                }
                let Some(l) = queue.lock().ok().and_then(|mut q| q.pop()) else { return };
                let bar = bars.as_ref().map(|m| m.add(layer_bar(&l.digest, l.size)));
                let result = fetch.partial(&l.digest).map_err(Error::from).and_then(|partial| {
                    if fetch.has_blob(&l.digest, l.size)? {
                        return Ok(None);
                    }
                    let tick = |n: u64| {
                        if let Some(b) = &bar {
                            b.inc(n);
                        }
                    };
                    client.download(&l.digest, l.size, &partial.path, &tick)?;
                    Ok(Some(fetch.take(&l.digest, partial)?))
                });
                if let Some(b) = &bar {
                    b.finish();
                }
                match result {
                    Ok(None) => {}
                    Ok(Some(path)) => {
                        if let Ok(mut r) = results.lock() {
                            r.push((l.digest.clone(), path));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(m) = &bars {
        let _ = m.clear();
    }
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}

fn layer_bar(d: &Digest, size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(d.short().to_string());
    bar
}
