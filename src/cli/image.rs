//! `exprun image ...`: the image store verbs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Subcommand;

use super::out::{out, outln};
use super::Globals;
use crate::error::{Error, Result};
use crate::image::{reference, ImageStore, ImageSummary, Progress};
use crate::record::files::size_text;

/// The `image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout directory, an oci-archive or a docker-archive tar
    Import {
        /// The layout directory or archive file
        path: PathBuf,
        /// Name the image NAME[:TAG] (only when the source holds one image)
        #[arg(long, value_name = "NAME[:TAG]")]
        name: Option<String>,
        /// Print only the manifest digests, and no progress bar
        #[arg(long, short)]
        quiet: bool,
        /// Refuse a layer whose files hold more than SIZE bytes once unpacked
        /// (a tar bomb) [default: 64g]
        #[arg(long = "max-layer-size", value_name = "SIZE")]
        max_layer_size: Option<String>,
        /// Refuse a layer with more than N entries [default: 2000000]
        #[arg(long = "max-layer-entries", value_name = "N")]
        max_layer_entries: Option<u64>,
        /// Refuse an image whose layers hold more than SIZE bytes together once
        /// unpacked [default: 128g]
        #[arg(long = "max-image-size", value_name = "SIZE")]
        max_image_size: Option<String>,
    },
    /// List the images in the store
    #[command(visible_alias = "list")]
    Ls {
        /// Print a JSON array with all fields
        #[arg(long)]
        json: bool,
        /// Show full digests
        #[arg(long)]
        digests: bool,
    },
    /// Show an image's digests, layers and config as JSON
    Inspect {
        /// name[:tag], name@sha256:..., sha256:... or a digest prefix
        reference: String,
    },
    /// Untag names, or remove images by digest (their blobs go at the next gc)
    #[command(visible_alias = "remove")]
    Rm {
        /// name[:tag], name@sha256:..., sha256:... or a digest prefix
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Delete blobs and layers that no image refers to
    Gc,
}

/// Run one `image` subcommand.
pub fn run(globals: &Globals, cmd: ImageCommand) -> Result<i32> {
    let store = ImageStore::open(&globals.store_dir())?;
    match cmd {
        ImageCommand::Import { path, name, quiet, max_layer_size, max_layer_entries, max_image_size } => {
            let progress = if quiet { Progress::Hidden } else { Progress::Auto };
            let defaults = crate::image::Limits::default();
            let limits = crate::image::Limits {
                max_bytes: match max_layer_size {
                    Some(s) => crate::spec::options::parse_size("--max-layer-size", &s)?,
                    None => defaults.max_bytes,
                },
                max_entries: max_layer_entries.unwrap_or(defaults.max_entries),
                max_image_bytes: match max_image_size {
                    Some(s) => crate::spec::options::parse_size("--max-image-size", &s)?,
                    None => defaults.max_image_bytes,
                },
                ..defaults
            };
            let mut seen = BTreeSet::new();
            for s in store.import_with_limits(&path, name.as_deref(), progress, limits)? {
                if quiet {
                    if seen.insert(s.manifest_digest.clone()) {
                        println!("{}", s.manifest_digest);
                    }
                } else {
                    println!("imported {} {}", s.name.as_deref().unwrap_or("<none>"), s.manifest_digest);
                }
            }
        }
        ImageCommand::Ls { json, digests } => {
            let rows = store.list()?;
            if json {
                outln!("{}", to_json(&rows)?);
            } else {
                out!("{}", table(&rows, digests));
            }
        }
        ImageCommand::Inspect { reference } => {
            outln!("{}", to_json(&store.inspect(&reference)?)?);
        }
        ImageCommand::Rm { references } => {
            for r in references {
                let report = store.remove(&r)?;
                for n in report.untagged {
                    outln!("untagged {n}");
                }
                for d in report.removed {
                    outln!("removed {d}");
                }
            }
        }
        ImageCommand::Gc => gc_store(globals, &store)?,
    }
    Ok(0)
}

/// Remove blobs and layers no image refers to, keeping the layers of live runs
/// (an image may be removed while a run still uses it), and say what went.
pub(super) fn gc_store(globals: &Globals, store: &ImageStore) -> Result<()> {
    let in_use = globals.state().layers_in_use();
    let r = store.gc(&in_use)?;
    println!(
        "removed {} blobs, {} layers, {} stale temp dirs; freed {:.1} MiB",
        r.blobs_removed,
        r.layers_removed,
        r.tmp_removed,
        r.bytes_freed as f64 / f64::from(1u32 << 20)
    );
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|source| Error::Json { op: "cannot print JSON", source })
}

/// The `image ls` table.
fn table(rows: &[ImageSummary], full_digests: bool) -> String {
    let mut lines = vec![[
        "NAME".to_string(),
        "TAG".to_string(),
        "DIGEST".to_string(),
        "SIZE".to_string(),
        "CREATED".to_string(),
    ]];
    for r in rows {
        let (name, tag) = match &r.name {
            Some(n) => {
                let (name, tag) = reference::split_tag(n);
                (name.to_string(), tag.unwrap_or("").to_string())
            }
            None => ("<none>".to_string(), "<none>".to_string()),
        };
        let digest =
            if full_digests { r.manifest_digest.to_string() } else { r.manifest_digest.short().to_string() };
        lines.push([name, tag, digest, size_text(r.size), r.created.clone().unwrap_or_else(|| "-".into())]);
    }
    let mut widths = [0usize; 5];
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (i, (cell, w)) in l.iter().zip(widths).enumerate() {
            if i + 1 == l.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn table_splits_name_and_tag() {
        let d = Digest::of_bytes(b"m");
        let row = |name: Option<&str>| ImageSummary {
            name: name.map(str::to_string),
            manifest_digest: d.clone(),
            config_digest: d.clone(),
            size: 2048,
            created: None,
            layers: 1,
        };
        let t = table(&[row(Some("localhost:5000/a/b:v1")), row(None)], false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{t}");
        assert!(lines[1].starts_with("localhost:5000/a/b   v1       "), "{t}");
        assert!(
            lines[1].contains(d.short()) && lines[1].contains("2.0 KiB") && lines[1].ends_with('-'),
            "{t}"
        );
        assert!(lines[2].starts_with("<none>"), "{t}");
    }
}
