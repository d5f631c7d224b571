//! `exprun replay`: ask again for a recorded run, exactly: the image by digest, the
//! inputs by digest, the same argv, environment, limits, mounts and pins. Before
//! anything starts, [`prepare`] lists what differs from the original ("drift");
//! a different image, input or secret refuses the replay unless allowed.

use std::path::{Path, PathBuf};

use super::Error;
use crate::image::ImageStore;
use crate::record::files::{digest_tree, TreeDigest};
use crate::record::host::HostFacts;
use crate::record::secrets::{self, Comparison};
pub use crate::record::Drift;
use crate::record::{DataRecord, ExprunInfo, Key, RunRecord};
use crate::spec::options::RunOptions;

/// A replay, ready to run.
#[derive(Debug)]
pub struct Prepared {
    /// The options to run with.
    pub options: RunOptions,
    /// The inputs, digested now.
    pub inputs: Vec<DataRecord>,
    /// What differs from the original.
    pub drift: Vec<Drift>,
}

impl Prepared {
    /// Whether any drift refuses the replay.
    pub fn blocked(&self) -> bool {
        self.drift.iter().any(|d| d.blocking)
    }
}

/// Rebuild the options of `record` and check them against the store, the
/// inputs, the caller's environment (for secrets) and this host. The replay's
/// outputs go under `output_root` (`/out` → `output_root/out`), never over the
/// original's. `caller_env` looks up a variable of the caller's environment;
/// `key` is this state root's, which recorded secrets are compared under.
pub fn prepare(
    store: &ImageStore,
    record: &RunRecord,
    output_root: &Path,
    host: &HostFacts,
    exprun: &ExprunInfo,
    caller_env: &dyn Fn(&str) -> Option<String>,
    key: &Key,
) -> Result<Prepared, Error> {
    let id = short(&record.run_id);
    let mut options = record.request.clone().ok_or_else(|| Error::NotReplayable {
        run: id.clone(),
        why: match record.status {
            crate::record::Status::Lost => "exprun died during it, before its request was recorded",
            _ => "it was not made by `exprun run` (an OCI bundle run has no request to replay)",
        }
        .into(),
    })?;
    let image = record
        .image
        .as_ref()
        .ok_or_else(|| Error::NotReplayable { run: id.clone(), why: "its record names no image".into() })?;
    let mut drift = Vec::new();

    // The image, by digest; with a different image under the recorded name only
    // as blocking drift.
    options.image = image.manifest_digest.to_string();
    if let Some(named) = image.name.as_ref().map(|n| format!("{n}@{}", image.manifest_digest)) {
        // Under its name too, when the name still points at it: the record reads better.
        if store.resolve(&named).is_ok() {
            options.image = named;
        }
    }
    if store.resolve(&options.image).is_err() {
        let label = image.name.clone().unwrap_or_else(|| image.reference.clone());
        match store.resolve(&label) {
            Ok(now) => {
                drift.push(Drift {
                    item: format!("image {label}"),
                    recorded: image.manifest_digest.to_string(),
                    now: now.manifest_digest.to_string(),
                    blocking: true,
                });
                options.image = now.manifest_digest.to_string();
            }
            Err(_) => {
                return Err(Error::ImageMissing { digest: image.manifest_digest.to_string(), name: label })
            }
        }
    }

    // Secrets: the record holds their digests; the caller gives the values again.
    // Only a digest made under this root's key can say "unchanged".
    for (name, value) in &mut options.env {
        let markers = secrets::markers(value);
        let Some(first) = markers.first() else { continue };
        let given = caller_env(name).ok_or_else(|| Error::SecretMissing { name: name.clone() })?;
        let recorded = format!("value with digest {}", secrets::short(&first.digest));
        match key.compare_env(name, value, &given) {
            Comparison::Same => {}
            Comparison::Changed => drift.push(Drift {
                item: format!("env {name}"),
                recorded,
                now: "a different value".into(),
                blocking: true,
            }),
            Comparison::Unknown(why) => drift.push(Drift {
                item: format!("env {name}"),
                recorded,
                now: format!("not compared: {why}"),
                blocking: false,
            }),
        }
        *value = given;
    }
    // A secret in the command itself has no variable to be given again through.
    let command = options.entrypoint.iter().flatten().chain(&options.command);
    if let Some((i, _)) = command.enumerate().find(|(_, a)| secrets::is_redacted(a)) {
        return Err(Error::NotReplayable {
            run: id,
            why: format!(
                "word {} of its command held a secret, which the record keeps only as a digest; \
                 pass secrets to the command through its environment (-e NAME) to make a run replayable",
                i + 1
            ),
        });
    }

    // Inputs, digested now.
    let mut inputs = Vec::new();
    for (m, rec) in options.inputs.iter().zip(&record.inputs) {
        let item = format!("input {}", m.destination.display());
        match digest_tree(&m.source) {
            Ok(tree) => {
                if let Some(old) = &rec.tree {
                    if old.digest != tree.digest {
                        drift.push(Drift {
                            item,
                            recorded: short_digest(&old.digest),
                            now: format!("{} ({})", short_digest(&tree.digest), changed_files(old, &tree)),
                            blocking: true,
                        });
                    }
                }
                inputs.push(DataRecord {
                    source: m.source.clone(),
                    destination: m.destination.clone(),
                    tree: Some(tree),
                    error: None,
                });
            }
            Err(e) => {
                return Err(Error::InputUnreadable {
                    destination: m.destination.clone(),
                    host_path: m.source.clone(),
                    error: e,
                })
            }
        }
    }

    // Outputs go to fresh directories.
    for m in &mut options.outputs {
        m.source = output_dir(output_root, &m.destination);
    }
    options.name = None;

    // The host and exprun: worth knowing, never refusing.
    let mut note = |item: &str, recorded: String, now: String| {
        if recorded != now {
            drift.push(Drift { item: item.into(), recorded, now, blocking: false });
        }
    };
    let r = &record.host;
    note("host.kernel_release", r.kernel_release.clone(), host.kernel_release.clone());
    note("host.arch", r.arch.clone(), host.arch.clone());
    note(
        "host.cpu_model",
        r.cpu_model.clone().unwrap_or_default(),
        host.cpu_model.clone().unwrap_or_default(),
    );
    note(
        "host.cpu_flags",
        r.cpu_flags_digest.as_ref().map(short_digest).unwrap_or_default(),
        host.cpu_flags_digest.as_ref().map(short_digest).unwrap_or_default(),
    );
    note("host.cpus_online", r.cpus_online.to_string(), host.cpus_online.to_string());
    note("host.os", r.os.clone().unwrap_or_default(), host.os.clone().unwrap_or_default());
    note("exprun.version", record.exprun.version.clone(), exprun.version.clone());
    note(
        "exprun.binary",
        record.exprun.binary_digest.as_ref().map(short_digest).unwrap_or_default(),
        exprun.binary_digest.as_ref().map(short_digest).unwrap_or_default(),
    );
    Ok(Prepared { options, inputs, drift })
}

/// Where an output mounted at `destination` goes under `root`.
pub fn output_dir(root: &Path, destination: &Path) -> PathBuf {
    root.join(destination.strip_prefix("/").unwrap_or(destination))
}

/// The drift table, for a terminal.
pub fn render_drift(drift: &[Drift]) -> String {
    if drift.is_empty() {
        return "no drift: image, inputs, secrets, host and exprun as recorded\n".into();
    }
    let t = crate::record::for_terminal;
    let w = drift.iter().map(|d| t(&d.item).len()).max().unwrap_or(0).max(5);
    let r = drift.iter().map(|d| t(&d.recorded).len()).max().unwrap_or(0).max(8);
    let n = drift.iter().map(|d| t(&d.now).len()).max().unwrap_or(0).max(3);
    let mut out = format!("{:<w$}  {:<r$}  {:<n$}  BLOCKS\n", "DRIFT", "RECORDED", "NOW");
    for d in drift {
        let blocks = if d.blocking { "yes" } else { "no" };
        out.push_str(&format!("{:<w$}  {:<r$}  {:<n$}  {blocks}\n", t(&d.item), t(&d.recorded), t(&d.now)));
    }
    out
}

fn changed_files(old: &TreeDigest, new: &TreeDigest) -> String {
    let changed = crate::record::diff::tree_changes(old, new);
    let shown: Vec<&str> = changed.iter().take(3).map(|c| c.path.as_str()).collect();
    let more = if changed.len() > 3 { format!(" and {} more", changed.len() - 3) } else { String::new() };
    format!("changed: {}{more}", shown.join(", "))
}

fn short(id: &str) -> String {
    id.get(..12).unwrap_or(id).to_string()
}

fn short_digest(d: &crate::digest::Digest) -> String {
    let s = d.to_string();
    s.get(..19).unwrap_or(&s).to_string()
}
