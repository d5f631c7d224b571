//! `exprun verify`: replay a recorded run, compare each replay with the original
//! (exit status, stdout, stderr, every output file), and with `--vary`, find the
//! variations the result depends on.
//!
//! The order: a drift check (as `replay`), then `--runs N` plain replays (the
//! control: whatever differs here depends on the clock, randomness or
//! scheduling), then, with `--vary`, one replay under all variations at once and,
//! if that differs beyond the control, a bisection down to the variations (or
//! combinations) responsible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::compare::{self, FileReport, Ignore, Tolerances};
use super::config::Settings;
use super::replay::{self, Here, Prepared};
use super::trust::Origin;
use super::vary::{self, Variation, VaryContext};
use super::vary_facts;
pub use super::verdict::{Attribution, ReplayReport, VariationOutcome, Verdict};
use super::Error;
use crate::record::RunRecord;
use crate::run::Replay;
use crate::spec::options::HostMount;
use crate::state::Root;

/// The verdict's format; bump on incompatible changes.
pub const VERDICT_SCHEMA: &str = "exprun.dev/verify/v1";

/// What `exprun verify` was asked.
pub struct VerifyOptions {
    /// Plain replays to make (at least 1).
    pub runs: u32,
    /// Variations to try.
    pub vary: Vec<Variation>,
    /// Numeric tolerances.
    pub tolerances: Tolerances,
    /// What is left out of the comparison.
    pub ignore: Ignore,
    /// The settings, as given (recorded in the verdict).
    pub settings: Settings,
    /// Replay even when the image, an input or a secret drifted.
    pub allow_drift: bool,
    /// Keep the replays' outputs here instead of removing them.
    pub keep_outputs: Option<PathBuf>,
    /// Where the record comes from.
    pub origin: Origin,
    /// `--allow` names (parsed), for a fetched run.
    pub allow: Vec<String>,
    /// `--input`s given: read from there instead, digest-checked.
    pub inputs: Vec<HostMount>,
}

/// Scratch space of one verification: the replays' outputs (on disk, under the
/// state root) and reordered input copies (on tmpfs), removed when dropped.
struct Scratch {
    dirs: Vec<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Where reordered input copies go: tmpfs lists entries in creation order.
const SHM: &str = "/dev/shm";

/// The most input data `dirent-order` copies into tmpfs (memory).
const DIRENT_COPY_LIMIT: u64 = 1 << 30;

fn scratch_name() -> String {
    format!("exprun-verify-{}-{}", std::process::id(), crate::fsutil::random_hex(4))
}

/// Remove the scratch directories of verifications whose exprun died.
pub fn remove_stale_scratch(root: &Root) {
    for dir in [root.verify_dir(), PathBuf::from(SHM)] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("exprun-verify-") else { continue };
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A verification, planned: its first replay prepared, so that what it will
/// run can be shown (and refused) before anything runs.
pub struct Verification<'a> {
    root: &'a Root,
    original: &'a RunRecord,
    o: &'a VerifyOptions,
    scratch: Scratch,
    outputs_root: PathBuf,
    here: Here,
    first: Prepared,
}

/// Plan the verification of the recorded run `original`.
pub fn plan<'a>(
    root: &'a Root,
    original: &'a RunRecord,
    o: &'a VerifyOptions,
) -> Result<Verification<'a>, crate::Error> {
    remove_stale_scratch(root);
    let mut scratch = Scratch { dirs: Vec::new() };
    let outputs_root = match &o.keep_outputs {
        Some(d) => d.clone(),
        None => {
            // The replays' outputs may hold anything the run wrote, set-id
            // files included until they are cleaned: no other user's business.
            let d = root.verify_dir().join(scratch_name());
            crate::fsutil::create_private_dir_all(&d).map_err(|source| Error::Io {
                op: "creating",
                path: d.clone(),
                source,
            })?;
            scratch.dirs.push(d.clone());
            d
        }
    };
    let here = Here::detect(root)?;
    let caller = |n: &str| std::env::var(n).ok();
    let ctx = here.context(&caller, &o.origin, &o.allow, &o.inputs);
    let first = replay::prepare(&ctx, original, &outputs_root.join("0"))?;
    Ok(Verification { root, original, o, scratch, outputs_root, here, first })
}

impl Verification<'_> {
    /// The first replay, as planned.
    pub fn first(&self) -> &Prepared {
        &self.first
    }

    /// Replay and compare: refused, before anything runs, for what the audit
    /// or the drift check refuses.
    pub fn run(self) -> Result<Verdict, crate::Error> {
        self.first.check(self.o.allow_drift)?;
        let Verification { root, original, o, mut scratch, outputs_root, here, first } = self;
        let caller = |n: &str| std::env::var(n).ok();
        let ctx = here.context(&caller, &o.origin, &o.allow, &o.inputs);
        verify(root, original, o, &ctx, &mut scratch, &outputs_root, first)
    }
}

/// Verify the recorded run `original`, whose first replay is `first`.
fn verify(
    root: &Root,
    original: &RunRecord,
    o: &VerifyOptions,
    rctx: &replay::Context<'_>,
    scratch: &mut Scratch,
    outputs_root: &Path,
    first: Prepared,
) -> Result<Verdict, crate::Error> {
    let drift = first.drift.clone();

    let mut v = Verdict {
        schema: VERDICT_SCHEMA.into(),
        run: original.run_id.clone(),
        verdict: String::new(),
        drift,
        replays: Vec::new(),
        unstable: Vec::new(),
        varied: o.vary.iter().map(|x| x.name().to_string()).collect(),
        variation_replays: Vec::new(),
        attributions: Vec::new(),
        not_applicable: Vec::new(),
        variations: Vec::new(),
        unmatched_rules: Vec::new(),
        settings: o.settings.clone(),
    };
    let mut n = 0;
    let mut one = |set: &[Variation], vctx: &VaryContext| -> Result<ReplayReport, crate::Error> {
        n += 1;
        let dir = outputs_root.join(n.to_string());
        let prepared = replay::prepare(rctx, original, &dir)?;
        prepared.check(o.allow_drift)?;
        replay_once(root, original, prepared, set, vctx, o)
    };

    // The control.
    let plain = VaryContext::default();
    let mut all_trees = Vec::new();
    for _ in 0..o.runs.max(1) {
        let r = one(&[], &plain)?;
        all_trees.extend(r.outputs.iter().cloned());
        for d in &r.differs {
            if !v.unstable.contains(d) {
                v.unstable.push(d.clone());
            }
        }
        v.replays.push(r);
    }
    v.unmatched_rules = compare::unmatched_in_all(&all_trees);

    // The variations: each one that can take effect here, with what it needs.
    let plan = vary_plan(original, o, rctx.store, &first, scratch)?;
    for (var, why) in &plan.not_tested {
        v.not_applicable.push(format!("{}: {why}", var.name()));
    }
    let vary: Vec<Variation> =
        o.vary.iter().copied().filter(|x| !plan.not_tested.iter().any(|(n, _)| n == x)).collect();
    let ctx = &plan.ctx;
    if !vary.is_empty() {
        let mut tried: BTreeMap<Vec<Variation>, Vec<String>> = BTreeMap::new();
        let unstable = v.unstable.clone();
        let mut changes = |set: &[Variation], v: &mut Verdict| -> Result<Vec<String>, crate::Error> {
            if let Some(c) = tried.get(set) {
                return Ok(c.clone());
            }
            let r = one(set, ctx)?;
            let c: Vec<String> = r.differs.iter().filter(|d| !unstable.contains(d)).cloned().collect();
            v.variation_replays.push(r);
            tried.insert(set.to_vec(), c.clone());
            Ok(c)
        };
        let mut stack = vec![vary.clone()];
        while let Some(set) = stack.pop() {
            let c = changes(&set, &mut v)?;
            if c.is_empty() {
                continue;
            }
            if set.len() == 1 {
                v.attributions.push(Attribution { variation: vary::label(&set), changes: c });
                continue;
            }
            let (a, b) = set.split_at(set.len() / 2);
            let (ca, cb) = (changes(a, &mut v)?, changes(b, &mut v)?);
            if ca.is_empty() && cb.is_empty() {
                v.attributions.push(Attribution { variation: vary::label(&set), changes: c });
                continue;
            }
            // Depth first, in order: push the second half first.
            if !cb.is_empty() {
                stack.push(b.to_vec());
            }
            if !ca.is_empty() {
                stack.push(a.to_vec());
            }
        }
        // A plain replay after the variations: what differs now depends on the
        // clock (a second has passed, say), not on a variation.
        if !v.attributions.is_empty() {
            let r = one(&[], &VaryContext::default())?;
            for d in &r.differs {
                if !v.unstable.contains(d) {
                    v.unstable.push(d.clone());
                }
            }
            v.replays.push(r);
            let unstable = v.unstable.clone();
            for a in &mut v.attributions {
                a.changes.retain(|c| !unstable.contains(c));
            }
            v.attributions.retain(|a| !a.changes.is_empty());
        }
        v.attributions.sort_by(|x, y| x.variation.cmp(&y.variation));
    }
    v.variations = outcomes(&o.vary, &v.attributions, &plan);
    let same = v.replays.iter().all(|r| r.differs.is_empty()) && v.attributions.is_empty();
    let compared = v.replays.iter().chain(&v.variation_replays).all(|r| r.not_compared.is_empty());
    v.verdict = match (same, compared) {
        (true, true) => "reproduced",
        // Nothing differs, but not everything was compared: no claim either way.
        (true, false) => "could-not-compare",
        (false, _) => "differs",
    }
    .into();
    Ok(v)
}

/// The variations' context, and those that cannot take effect here (why).
struct VaryPlan {
    ctx: VaryContext,
    not_tested: Vec<(Variation, String)>,
    applied: Vec<(Variation, String)>,
}

/// What each variation asked for needs: a user and a locale the image has,
/// the CPUs to bind to and their count files, the reordered input copies.
fn vary_plan(
    original: &RunRecord,
    o: &VerifyOptions,
    store: &crate::image::ImageStore,
    first: &Prepared,
    scratch: &mut Scratch,
) -> Result<VaryPlan, crate::Error> {
    let mut plan = VaryPlan { ctx: VaryContext::default(), not_tested: Vec::new(), applied: Vec::new() };
    if o.vary.is_empty() {
        return Ok(plan);
    }
    let image = store.resolve(&first.options.image)?;
    let layers: Vec<PathBuf> = image.layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect();
    let read = |rel: &str| {
        crate::spec::user::read_image_file(&layers, Path::new(rel)).map_err(|source| Error::Io {
            op: "reading the image's",
            path: PathBuf::from(rel),
            source,
        })
    };
    let process = original.spec.process().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let env_value =
        |name: &str| env.iter().find_map(|e| e.strip_prefix(name)?.strip_prefix('=').map(str::to_string));
    let shm = PathBuf::from(SHM).join(scratch_name());
    let mut shm_made = false;
    let mut make_shm = |scratch: &mut Scratch| -> Result<PathBuf, Error> {
        if !shm_made {
            // Copies of the inputs: as private as the inputs' own tree.
            std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
                .create(&shm)
                .map_err(|source| Error::Io { op: "creating", path: shm.clone(), source })?;
            scratch.dirs.push(shm.clone());
            shm_made = true;
        }
        Ok(shm.clone())
    };
    for var in &o.vary {
        let outcome: Result<String, String> = match var {
            Variation::User if !nix::unistd::geteuid().is_root() => {
                Err("a rootless run has no user but root".into())
            }
            Variation::User => {
                let uid = process.user().uid();
                vary_facts::other_user(read("etc/passwd")?.as_deref(), uid).map(|u| {
                    plan.ctx.user = Some((u.uid, u.gid));
                    format!("uid {} ({}), gid {}", u.uid, u.name, u.gid)
                })
            }
            Variation::Locale => {
                let current = env_value("LC_ALL").or_else(|| env_value("LANG")).unwrap_or_else(|| "C".into());
                let have = vary_facts::image_locales(&layers).map_err(|source| Error::Io {
                    op: "listing the image's locales in",
                    path: PathBuf::from("usr/lib/locale"),
                    source,
                })?;
                vary_facts::other_locale(&have, &current).map(|l| {
                    plan.ctx.locale = Some(l.clone());
                    format!("LANG and LC_ALL {l} (was {current})")
                })
            }
            Variation::Cpus => {
                let allowed = crate::record::host::allowed_cpus();
                let pinned = original.determinism.as_ref().map(|d| d.cpuset()).unwrap_or_default();
                let now = if pinned.is_empty() { allowed.len() } else { pinned.len() };
                let cpus = vary::varied_cpus(&pinned, &allowed);
                if allowed.len() < 2 && cpus.len() == now {
                    Err(format!("exprun may use only {} CPU here: no other count to give", allowed.len()))
                } else {
                    let dir = make_shm(scratch)?.join("cpus");
                    let files = std::fs::create_dir(&dir)
                        .and_then(|()| vary_facts::write_cpu_files(&dir, &cpus))
                        .map_err(|source| Error::Io {
                            op: "writing the CPU files in",
                            path: dir.clone(),
                            source,
                        })?;
                    let shown = crate::spec::options::format_cpuset(&cpus);
                    plan.ctx.cpu_files = Some(files);
                    plan.ctx.cpus = cpus.clone();
                    Ok(format!(
                        "bound to CPU {shown} ({} of {now}); /sys/devices/system/cpu/online and /proc/cpuinfo show them",
                        cpus.len()
                    ))
                }
            }
            Variation::DirentOrder => {
                let input_bytes: u64 =
                    first.inputs.iter().filter_map(|i| i.tree.as_ref()).map(|t| t.bytes).sum();
                if input_bytes > DIRENT_COPY_LIMIT {
                    Err(format!(
                        "the inputs hold {} MiB, more than the {} MiB exprun copies into memory to reorder",
                        input_bytes >> 20,
                        DIRENT_COPY_LIMIT >> 20
                    ))
                } else {
                    let shm = make_shm(scratch)?;
                    let mut any = false;
                    for (i, input) in first.options.inputs.iter().enumerate() {
                        let copy = shm.join(i.to_string());
                        any |= vary::copy_reordered(&input.source, &copy).map_err(|source| Error::Io {
                            op: "copying the input for dirent-order into",
                            path: copy.clone(),
                            source,
                        })?;
                        plan.ctx.reordered_inputs.push((input.source.clone(), copy));
                    }
                    if any {
                        Ok("input directories listed in reverse".into())
                    } else {
                        Err("no input directory holds two or more entries (only --input directories are reordered)"
                            .into())
                    }
                }
            }
            _ => Ok(String::new()),
        };
        match outcome {
            Ok(a) if a.is_empty() => {}
            Ok(a) => plan.applied.push((*var, a)),
            Err(why) => plan.not_tested.push((*var, why)),
        }
    }
    Ok(plan)
}

/// Each variation's outcome, from the attributions and the plan.
fn outcomes(vary: &[Variation], attributions: &[Attribution], plan: &VaryPlan) -> Vec<VariationOutcome> {
    vary.iter()
        .map(|var| {
            let name = var.name();
            let mut out = VariationOutcome {
                variation: name.to_string(),
                outcome: "no-change".into(),
                applied: plan.applied.iter().find(|(v, _)| v == var).map(|(_, a)| a.clone()),
                why: None,
                changes: Vec::new(),
                with: Vec::new(),
            };
            if let Some((_, why)) = plan.not_tested.iter().find(|(v, _)| v == var) {
                out.outcome = "not-tested".into();
                out.why = Some(why.clone());
                return out;
            }
            for a in attributions {
                let members: Vec<&str> = a.variation.split('+').collect();
                if !members.contains(&name) {
                    continue;
                }
                out.outcome = "changes-result".into();
                for c in &a.changes {
                    if !out.changes.contains(c) {
                        out.changes.push(c.clone());
                    }
                }
                out.with.extend(members.iter().filter(|m| **m != name).map(|m| m.to_string()));
            }
            out
        })
        .collect()
}

/// One replay under `set`, compared with the original.
fn replay_once(
    root: &Root,
    original: &RunRecord,
    prepared: Prepared,
    set: &[Variation],
    ctx: &VaryContext,
    o: &VerifyOptions,
) -> Result<ReplayReport, crate::Error> {
    let id = crate::fsutil::random_hex(16);
    let label = vary::label(set);
    let vary_fn =
        |spec: &mut oci_spec::runtime::Spec, cpus: &mut Vec<usize>| vary::apply(set, spec, cpus, ctx);
    let options = prepared.options;
    if let (true, Some((uid, gid))) = (set.contains(&Variation::User), ctx.user) {
        // The other user must be able to write the outputs, as the original could.
        for m in &options.outputs {
            std::fs::create_dir_all(&m.source)
                .and_then(|()| std::os::unix::fs::chown(&m.source, Some(uid), Some(gid)))
                .map_err(|source| Error::Io { op: "preparing", path: m.source.clone(), source })?;
        }
    }
    let result = crate::run::run_with(
        root,
        &options,
        vec!["exprun".into(), "verify".into(), original.run_id.clone()],
        Replay {
            id: Some(id.clone()),
            of: Some(original.run_id.clone()),
            made_by: Some(crate::record::MadeBy::Verify),
            pins: original.determinism.as_ref(),
            variation: (!set.is_empty()).then_some((label.as_str(), &vary_fn as &crate::run::Vary<'_>)),
            inputs: Some(prepared.inputs),
            drift: prepared.drift,
            quiet: true,
            keep_upper_at: None,
            stop_on_signal: false,
        },
    )?;
    let rec = root.read_record(&result.run_id)?;
    Ok(compare_records(root, original, &rec, set, o))
}

/// Compare a replay's record (and kept output) with the original's.
fn compare_records(
    root: &Root,
    original: &RunRecord,
    replay: &RunRecord,
    set: &[Variation],
    o: &VerifyOptions,
) -> ReplayReport {
    let (tol, origin) = (&o.tolerances, &o.origin);
    // A fetched run's original outputs are read from its artifact only, never
    // from the path its record names on this host.
    let artifact = origin.artifact();
    let original_dir = |source: &Path| match &artifact {
        Some(a) if !source.starts_with(a) => None,
        _ => Some(source.to_path_buf()),
    };
    let mut differs = Vec::new();
    if original.exit.code != replay.exit.code {
        differs.push("exit".to_string());
    }
    let mut streams = Vec::new();
    let mut ignored = Vec::new();
    for (name, exp, act) in
        [("stdout", &original.stdout, &replay.stdout), ("stderr", &original.stderr, &replay.stderr)]
    {
        let (Some(exp), Some(act)) = (exp, act) else { continue };
        if exp.digest == act.digest {
            continue;
        }
        if o.ignore.stream(name) {
            ignored.push(name.to_string());
            continue;
        }
        let kept = |rec: &RunRecord, s: &crate::spawn::wait::StreamSummary| -> Option<Vec<u8>> {
            if s.bytes == 0 {
                return Some(Vec::new());
            }
            (s.kept == Some(s.bytes))
                .then(|| std::fs::read(root.runs_dir().join(&rec.run_id).join(name)).ok())
                .flatten()
        };
        let expected = kept(original, exp);
        let report = match kept(replay, act) {
            Some(actual) => {
                compare::compare_stream(name, &exp.digest, exp.bytes, expected.as_deref(), &actual, tol)
            }
            None => Some(FileReport::by_digest(name, exp.bytes, act.bytes)),
        };
        if let Some(r) = report {
            if r.verdict.is_difference() {
                differs.push(name.to_string());
            }
            streams.push(r);
        }
    }
    let mut outputs = Vec::new();
    let mut not_compared = Vec::new();
    let mut mode_changes = Vec::new();
    let compare_modes = o.settings.compare_modes();
    for (exp, act) in original.outputs.iter().zip(&replay.outputs) {
        let (Some(et), Some(at)) = (&exp.tree, &act.tree) else {
            differs.push(exp.destination.display().to_string());
            continue;
        };
        let original_dir = original_dir(&exp.source);
        let mut t =
            compare::compare_tree(et, original_dir.as_deref(), at, &act.source, &exp.destination, tol);
        let single = Path::new(&t.destination).file_name().map(|n| n.to_string_lossy().into_owned());
        let dest = t.destination.clone();
        t.files.retain(|f| {
            let key = difference_key(&dest, &f.path);
            let rel = if f.path == "." { single.clone().unwrap_or_default() } else { f.path.clone() };
            let leave_out = o.ignore.file(&rel, &key);
            if leave_out {
                ignored.push(key);
            }
            !leave_out
        });
        for f in t.files.iter().filter(|f| f.verdict.is_difference()) {
            let key = difference_key(&t.destination, &f.path);
            match f.verdict {
                compare::Verdict::CouldNotCompare => not_compared.push(key),
                // Content first: the same bytes with other permission bits.
                compare::Verdict::ModeChanged if !compare_modes => mode_changes.push(key),
                _ => differs.push(key),
            }
        }
        outputs.push(t);
    }
    ReplayReport {
        run_id: replay.run_id.clone(),
        variation: set.iter().map(|v| v.name().to_string()).collect(),
        expected_exit: original.exit.code,
        actual_exit: replay.exit.code,
        streams,
        outputs,
        differs,
        not_compared,
        mode_changes,
        ignored,
        gpus: crate::record::gpu::differences(&original.gpus, &replay.gpus)
            .into_iter()
            .map(|(item, a, b)| format!("{item}: {a} -> {b}"))
            .collect(),
    }
}

/// How a file's difference is named: `<destination>/<path>`.
pub(super) fn difference_key(destination: &str, path: &str) -> String {
    if path == "." {
        destination.to_string()
    } else {
        format!("{destination}/{path}")
    }
}
