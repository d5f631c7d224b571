//! `exprun replay`: ask again for a recorded run, exactly: the image by digest, the
//! inputs by digest, the same argv, environment, limits, mounts and pins. Before
//! anything starts, [`prepare`] plans the replay from what the record proves:
//! it lists what differs from the original ("drift"; a different image, input
//! or secret refuses the replay unless allowed) and, through
//! [`trust::audit`], every host path and privilege the request asks for; for a
//! run fetched from a registry those are refused unless the user allows each.

use std::path::{Path, PathBuf};

use super::trust::{self, Finding, Origin};
use super::Error;
use crate::image::ImageStore;
use crate::record::files::{digest_input, TreeDigest};
use crate::record::host::HostFacts;
use crate::record::secrets::{self, Comparison};
pub use crate::record::Drift;
use crate::record::{DataRecord, ExprunInfo, Key, RunRecord};
use crate::spec::options::{HostMount, RunOptions};

/// Whether a finding of the audit stands in the way of the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permit {
    /// The run was recorded here, by the caller: shown, not refused.
    Recorded,
    /// A fetched run, and an `--allow` names it.
    Allowed,
    /// A fetched run, and nothing allows it.
    Refused,
}

/// What a replay is checked against here: the image store, this host, this
/// exprun, this state root's key and the caller's rlimits.
pub struct Here {
    /// The image store.
    pub store: ImageStore,
    /// This host.
    pub host: HostFacts,
    /// This exprun.
    pub exprun: ExprunInfo,
    /// This state root's key.
    pub key: Key,
    /// The caller's rlimits, as (OCI name, soft, hard).
    pub rlimits: Vec<(String, u64, u64)>,
    /// The state root's cache directory (the input digest cache).
    pub cache_dir: PathBuf,
}

impl Here {
    /// Look at this host and state root.
    pub fn detect(root: &crate::state::Root) -> Result<Self, crate::Error> {
        let cgroups = crate::cgroups::CgroupHost::detect().map_err(crate::plan::Error::from)?;
        Ok(Self {
            store: ImageStore::open(&root.store_dir())?,
            host: crate::record::host::facts(&cgroups),
            exprun: crate::record::exprun_info(&root.cache_dir()),
            key: Key::open(root.dir())?,
            rlimits: crate::spec::caller_rlimits(),
            cache_dir: root.cache_dir(),
        })
    }

    /// The context of one [`prepare`].
    pub fn context<'a>(
        &'a self,
        caller_env: &'a dyn Fn(&str) -> Option<String>,
        origin: &'a Origin,
        allow: &'a [String],
        inputs: &'a [HostMount],
    ) -> Context<'a> {
        Context {
            store: &self.store,
            host: &self.host,
            exprun: &self.exprun,
            caller_env,
            key: &self.key,
            host_rlimits: &self.rlimits,
            origin,
            allow,
            inputs,
            cache_dir: &self.cache_dir,
        }
    }
}

/// What [`prepare`] needs besides the record.
pub struct Context<'a> {
    /// The image store.
    pub store: &'a ImageStore,
    /// This host.
    pub host: &'a HostFacts,
    /// This exprun.
    pub exprun: &'a ExprunInfo,
    /// A variable of the caller's environment (secrets are given again so).
    pub caller_env: &'a dyn Fn(&str) -> Option<String>,
    /// This state root's key, which recorded secrets are compared under.
    pub key: &'a Key,
    /// The caller's rlimits, as (OCI name, soft, hard).
    pub host_rlimits: &'a [(String, u64, u64)],
    /// Where the record comes from.
    pub origin: &'a Origin,
    /// The `--allow` names given (parsed with [`trust::parse_allow`]).
    pub allow: &'a [String],
    /// Inputs given with `--input`: read from there instead, digest-checked.
    pub inputs: &'a [HostMount],
    /// The state root's cache directory (the input digest cache).
    pub cache_dir: &'a Path,
}

/// A replay, planned: what will run and what stands in its way.
#[derive(Debug)]
pub struct Prepared {
    /// The replayed run's id (short).
    pub run: String,
    /// Whether its record was fetched from a registry.
    pub fetched: bool,
    /// The options to run with (secret values given again included: never print them).
    pub options: RunOptions,
    /// The inputs, digested now.
    pub inputs: Vec<DataRecord>,
    /// What differs from the original.
    pub drift: Vec<Drift>,
    /// Every host path and privilege beyond the default profile, and whether
    /// it is permitted.
    pub findings: Vec<(Finding, Permit)>,
    /// `--allow` names that permit nothing the request asks for.
    pub unused_allows: Vec<String>,
    /// The variables whose values are taken from the caller's environment.
    pub secrets: Vec<String>,
    /// Secret variables the caller has not exported.
    pub missing_secrets: Vec<String>,
}

impl Prepared {
    /// Whether any drift refuses the replay.
    pub fn blocked(&self) -> bool {
        self.drift.iter().any(|d| d.blocking)
    }

    /// The findings that refuse the replay.
    pub fn refused(&self) -> Vec<&Finding> {
        self.findings.iter().filter(|(_, p)| *p == Permit::Refused).map(|(f, _)| f).collect()
    }

    /// Refuse the replay for what nothing allows, then for a secret not
    /// given again, then for blocking drift (unless `allow_drift`).
    pub fn check(&self, allow_drift: bool) -> Result<(), Error> {
        let refused = self.refused();
        if !refused.is_empty() {
            return Err(Error::Refused { run: self.run.clone(), list: render_refusal(&refused) });
        }
        if let Some(name) = self.missing_secrets.first() {
            return Err(Error::SecretMissing { name: name.clone() });
        }
        if self.blocked() && !allow_drift {
            return Err(Error::Drift { table: render_drift(&self.drift) });
        }
        Ok(())
    }
}

/// The body of [`Error::Refused`]: each finding, then the `--allow` flags that
/// permit all that can be permitted.
fn render_refusal(refused: &[&Finding]) -> String {
    let t = crate::record::for_terminal;
    let mut out = String::new();
    let (allowable, never): (Vec<&Finding>, Vec<&Finding>) = refused.iter().partition(|f| f.allow.is_some());
    for f in &allowable {
        out.push_str(&format!(
            "  {}: {}  (--allow {})\n",
            f.field,
            t(&f.what),
            t(f.allow.as_deref().unwrap_or(""))
        ));
    }
    if !allowable.is_empty() {
        let flags: Vec<String> = allowable
            .iter()
            .filter_map(|f| f.allow.as_deref())
            .map(|a| format!("--allow {}", t(a)))
            .collect();
        out.push_str(&format!(
            "to permit it, only if you trust whoever pushed the run: {}\n",
            flags.join(" ")
        ));
    }
    if !never.is_empty() {
        out.push_str("never given to a fetched run:\n");
        for f in &never {
            let instead = f.instead.as_deref().unwrap_or_default();
            out.push_str(&format!("  {}: {}: {}\n", f.field, t(&f.what), t(instead)));
        }
    }
    out
}

/// Plan the replay of `record`: rebuild its options from what the record
/// proves, check them against the store, the inputs, the caller's environment
/// (for secrets) and this host, and audit them. The replay's outputs go under
/// `output_root` (`/out` → `output_root/out`), never over the original's.
pub fn prepare(ctx: &Context<'_>, record: &RunRecord, output_root: &Path) -> Result<Prepared, Error> {
    let id = short(&record.run_id);
    let mut options = record.request.clone().ok_or_else(|| Error::NotReplayable {
        run: id.clone(),
        why: match record.status {
            crate::record::Status::Lost => "exprun died during it, before its request was recorded",
            _ => "it was not made by `exprun run` (an OCI bundle run has no request to replay)",
        }
        .into(),
    })?;
    if let Origin::Fetched { run_dir } = ctx.origin {
        check_fields(&id, &run_dir.join("record.json"))?;
    }
    trust::validate(&options).map_err(|(field, why)| Error::BadRequest {
        run: id.clone(),
        field: format!("request.{field}"),
        why: crate::record::for_terminal(&why).into_owned(),
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
        if ctx.store.resolve(&named).is_ok() {
            options.image = named;
        }
    }
    if ctx.store.resolve(&options.image).is_err() {
        let label = image.name.clone().unwrap_or_else(|| image.reference.clone());
        match ctx.store.resolve(&label) {
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

    let (inputs, provided) = inputs(ctx, record, &id, &mut options, &mut drift)?;

    // Devices: read again on this host; CDI devices resolved again from the
    // recorded spec directories, a fetched run's from this host's defaults.
    let cdi_dirs: Vec<PathBuf> = if ctx.origin.is_fetched() || options.devices.cdi_spec_dirs.is_empty() {
        crate::cdi::DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect()
    } else {
        options.devices.cdi_spec_dirs.clone()
    };
    let caller = nix::unistd::geteuid().as_raw();
    for (item, recorded, now, blocking) in
        crate::spec::devices::refresh(&mut options.devices, &cdi_dirs, caller)
    {
        drift.push(Drift { item, recorded, now, blocking });
    }

    // Outputs go to fresh directories.
    for m in &mut options.outputs {
        m.source = output_dir(output_root, &m.destination);
    }
    options.name = None;
    let mut provided = provided;
    provided.extend(options.outputs.iter().map(|m| m.source.clone()));

    let audit =
        trust::audit(&options, &trust::AuditContext { host_rlimits: ctx.host_rlimits, provided: &provided });
    let allowed = |f: &Finding| f.allow.as_ref().is_some_and(|a| ctx.allow.contains(a));
    let unused_allows =
        ctx.allow.iter().filter(|a| !audit.iter().any(|f| f.allow.as_ref() == Some(a))).cloned().collect();
    let findings: Vec<(Finding, Permit)> = audit
        .into_iter()
        .map(|f| {
            let p = match (ctx.origin.is_fetched(), allowed(&f)) {
                (false, _) => Permit::Recorded,
                (true, true) => Permit::Allowed,
                (true, false) => Permit::Refused,
            };
            (f, p)
        })
        .collect();

    // Secrets: the record holds their digests; the caller gives the values again
    // (for a fetched run, only those the caller allows it to take). Only a
    // digest made under this root's key can say "unchanged".
    let (mut taken, mut missing) = (Vec::new(), Vec::new());
    for (name, value) in &mut options.env {
        let markers = secrets::markers(value);
        let Some(first) = markers.first() else { continue };
        let permitted = findings.iter().any(|(f, p)| {
            *p != Permit::Refused && f.allow.as_deref() == Some(format!("env:{name}").as_str())
        });
        if !permitted {
            continue;
        }
        let Some(given) = (ctx.caller_env)(name) else {
            missing.push(name.clone());
            continue;
        };
        let recorded = format!("value with digest {}", secrets::short(&first.digest));
        match ctx.key.compare_env(name, value, &given) {
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
        taken.push(name.clone());
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

    // The host, its GPUs and exprun: worth knowing, never refusing.
    let mut note = |item: &str, recorded: String, now: String| {
        if recorded != now {
            drift.push(Drift { item: item.into(), recorded, now, blocking: false });
        }
    };
    let (r, host, exprun) = (&record.host, ctx.host, ctx.exprun);
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
    // The GPUs: read again only for a run that had some.
    if !record.gpus.is_empty() {
        let now = crate::record::gpu::facts_again(&record.gpus);
        for (item, recorded, now) in crate::record::gpu::differences(&record.gpus, &now) {
            drift.push(Drift { item, recorded, now, blocking: false });
        }
    }
    Ok(Prepared {
        run: id,
        fetched: ctx.origin.is_fetched(),
        options,
        inputs,
        drift,
        findings,
        unused_allows,
        secrets: taken,
        missing_secrets: missing,
    })
}

/// A fetched record's request, as JSON, holds only fields exprun knows: one it
/// does not know would be ignored, never applied, and the user would not be
/// told.
fn check_fields(id: &str, record_path: &Path) -> Result<(), Error> {
    let bytes = std::fs::read(record_path).map_err(|source| Error::Io {
        op: "reading",
        path: record_path.to_path_buf(),
        source,
    })?;
    // The field names and serde's messages quote what the record holds.
    let t = |s: &str| crate::record::for_terminal(s).into_owned();
    let bad = |field: String, why: String| Error::BadRequest {
        run: id.to_string(),
        field: t(&field),
        why: t(&why),
    };
    let raw: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad("record.json".into(), e.to_string()))?;
    let unknown = trust::unknown_fields(&raw["request"]).map_err(|(field, why)| bad(field, why))?;
    if !unknown.is_empty() {
        return Err(bad(
            unknown.join(", "),
            "exprun does not know it, so it would not be applied; a fetched request is replayed only \
             when exprun can apply all of it"
                .into(),
        ));
    }
    Ok(())
}

/// The replay's inputs: each request input paired with the record's input at
/// the same destination, read from `--input` when given there, for a fetched
/// run from the artifact's copy (never from the recorded host path), and
/// digested now. Returns them with the host paths this replay provides.
fn inputs(
    ctx: &Context<'_>,
    record: &RunRecord,
    id: &str,
    options: &mut RunOptions,
    drift: &mut Vec<Drift>,
) -> Result<(Vec<DataRecord>, Vec<PathBuf>), Error> {
    // What these errors quote of the record is escaped for the terminal.
    let not = |why: String| Error::NotReplayable {
        run: id.to_string(),
        why: crate::record::for_terminal(&why).into_owned(),
    };
    let dests = |mut v: Vec<&Path>| -> Result<(), Error> {
        v.sort();
        match v.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => Err(not(format!("two of its inputs are mounted at {}", w[0].display()))),
            None => Ok(()),
        }
    };
    dests(options.inputs.iter().map(|m| m.destination.as_path()).collect())?;
    dests(record.inputs.iter().map(|m| m.destination.as_path()).collect())?;
    if options.inputs.len() != record.inputs.len() {
        return Err(not(format!(
            "its request has {} input(s) and its record digests {}: every input must have a recorded digest",
            options.inputs.len(),
            record.inputs.len()
        )));
    }
    if let Some(g) =
        ctx.inputs.iter().find(|g| !options.inputs.iter().any(|m| m.destination == g.destination))
    {
        let known: Vec<String> = options.inputs.iter().map(|m| m.destination.display().to_string()).collect();
        return Err(Error::UnknownInput {
            destination: g.destination.clone(),
            inputs: if known.is_empty() {
                "none".into()
            } else {
                crate::record::for_terminal(&known.join(", ")).into_owned()
            },
        });
    }
    let artifact = ctx.origin.artifact().map(|a| a.join("inputs"));
    let mut out = Vec::new();
    let mut provided = Vec::new();
    for m in &mut options.inputs {
        let dest = m.destination.display().to_string();
        let (j, rec) = record
            .inputs
            .iter()
            .enumerate()
            .find(|(_, r)| r.destination == m.destination)
            .ok_or_else(|| not(format!("its request's input {dest} has no digest in its record")))?;
        let recorded = match &rec.tree {
            Some(t) if t.incomplete.is_none() => t,
            _ => {
                return Err(not(format!(
                    "its record has no whole digest of input {dest}, so it cannot be checked"
                )))
            }
        };
        let given = ctx.inputs.iter().find(|g| g.destination == m.destination);
        let copy = artifact.as_ref().map(|a| a.join(j.to_string()));
        let from_artifact = given.is_none() && copy.is_some();
        m.source = match (given, &copy) {
            (Some(g), _) => g.source.clone(),
            (None, Some(c)) => match std::fs::symlink_metadata(c) {
                Ok(md) if !md.file_type().is_symlink() => c.clone(),
                // Not carried: the audit refuses the recorded host path, which is
                // never read.
                _ => {
                    m.source = rec.source.clone();
                    continue;
                }
            },
            (None, None) => m.source.clone(),
        };
        let label = format!("input {dest}");
        let tree =
            digest_input(&m.source, &label, Some(ctx.cache_dir)).map_err(|e| Error::InputUnreadable {
                destination: m.destination.clone(),
                host_path: m.source.clone(),
                error: e,
            })?;
        if !recorded.matches(&tree) {
            if from_artifact {
                let found = format!("{} ({})", tree.digest, changed_files(recorded, &tree));
                return Err(Error::ArtifactMismatch {
                    run: id.to_string(),
                    what: crate::record::for_terminal(&format!("input {dest}")).into_owned(),
                    recorded: recorded.digest.to_string(),
                    found: crate::record::for_terminal(&found).into_owned(),
                });
            }
            drift.push(Drift {
                item: format!("input {dest}"),
                recorded: short_digest(&recorded.digest),
                now: format!("{} ({})", short_digest(&tree.digest), changed_files(recorded, &tree)),
                blocking: true,
            });
        }
        provided.push(m.source.clone());
        out.push(DataRecord {
            source: m.source.clone(),
            destination: m.destination.clone(),
            tree: Some(tree),
            error: None,
        });
    }
    Ok((out, provided))
}

/// Where an output mounted at `destination` goes under `root`.
pub fn output_dir(root: &Path, destination: &Path) -> PathBuf {
    root.join(destination.strip_prefix("/").unwrap_or(destination))
}

/// The drift table, for a terminal.
pub fn render_drift(drift: &[Drift]) -> String {
    if drift.is_empty() {
        return "no drift: image, inputs, secrets, host, GPUs and exprun as recorded\n".into();
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
