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

use serde::{Deserialize, Serialize};

use super::compare::{self, FileReport, Tolerances, TreeReport};
use super::replay::{self, Drift, Here, Prepared};
use super::trust::Origin;
use super::vary::{self, Variation, VaryContext};
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

/// How one replay compared with the original.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplayReport {
    /// The replay's run id.
    pub run_id: String,
    /// The variations it ran under (empty: a plain replay).
    pub variation: Vec<String>,
    /// The original's exit status.
    pub expected_exit: Option<i32>,
    /// The replay's.
    pub actual_exit: Option<i32>,
    /// stdout and stderr, when not identical.
    pub streams: Vec<FileReport>,
    /// One report per output.
    pub outputs: Vec<TreeReport>,
    /// Everything that differs, as `exit`, `stdout`, `stderr` or
    /// `<destination>/<path>`.
    pub differs: Vec<String>,
    /// Output entries that could not be compared (not digested in full on one
    /// side), as `<destination>/<path>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
}

/// A variation (or combination) the result depends on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attribution {
    /// The variation, or `a+b` when only the combination changes the result.
    pub variation: String,
    /// What it changes, beyond what differs on a plain replay.
    pub changes: Vec<String>,
}

/// The verdict of `exprun verify`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// [`VERDICT_SCHEMA`].
    pub schema: String,
    /// The original run's id.
    pub run: String,
    /// `reproduced`, `differs`, or `could-not-compare` (nothing differs, but an
    /// output was not digested in full on one side).
    pub verdict: String,
    /// What drifted since the original (see `exprun replay`).
    pub drift: Vec<Drift>,
    /// The plain replays.
    pub replays: Vec<ReplayReport>,
    /// What differs on a plain replay: depends on the wall clock, randomness or
    /// scheduling, since nothing else changed.
    pub unstable: Vec<String>,
    /// The variations tried.
    pub varied: Vec<String>,
    /// Replays under variations, in the order made.
    pub variation_replays: Vec<ReplayReport>,
    /// The variations the result depends on.
    pub attributions: Vec<Attribution>,
    /// Variations that could not take effect (e.g. dirent-order without input
    /// directories of two or more entries).
    pub not_applicable: Vec<String>,
    /// Tolerance rules that matched no output file.
    pub unmatched_rules: Vec<String>,
}

impl Verdict {
    /// Whether the run reproduced: every plain replay equal (within tolerance),
    /// and no variation changing the result.
    pub fn reproduced(&self) -> bool {
        self.verdict == "reproduced"
    }
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
        unmatched_rules: Vec::new(),
    };
    let mut n = 0;
    let mut one = |set: &[Variation], vctx: &VaryContext| -> Result<ReplayReport, crate::Error> {
        n += 1;
        let dir = outputs_root.join(n.to_string());
        let prepared = replay::prepare(rctx, original, &dir)?;
        prepared.check(o.allow_drift)?;
        replay_once(root, original, prepared, set, vctx, &o.tolerances, &o.origin)
    };

    // The control.
    let plain =
        VaryContext { allowed_cpus: crate::record::host::allowed_cpus(), reordered_inputs: Vec::new() };
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

    // The variations. A rootless run has no other user to switch to.
    let mut vary = o.vary.clone();
    if !nix::unistd::geteuid().is_root() && vary.contains(&Variation::User) {
        vary.retain(|v| *v != Variation::User);
        v.not_applicable.push("user: a rootless run has no user but root".into());
    }
    if !vary.is_empty() {
        let mut ctx = plain;
        let input_bytes: u64 = first.inputs.iter().filter_map(|i| i.tree.as_ref()).map(|t| t.bytes).sum();
        if vary.contains(&Variation::DirentOrder) && input_bytes > DIRENT_COPY_LIMIT {
            v.not_applicable.push(format!(
                "dirent-order: the inputs hold {} MiB, more than the {} MiB exprun copies into memory to reorder",
                input_bytes >> 20,
                DIRENT_COPY_LIMIT >> 20
            ));
        } else if vary.contains(&Variation::DirentOrder) {
            let shm = PathBuf::from(SHM).join(scratch_name());
            scratch.dirs.push(shm.clone());
            // Copies of the inputs: as private as the inputs' own tree.
            std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
                .create(&shm)
                .map_err(|source| Error::Io { op: "creating", path: shm.clone(), source })?;
            let mut any = false;
            for (i, input) in first.options.inputs.iter().enumerate() {
                let copy = shm.join(i.to_string());
                any |= vary::copy_reordered(&input.source, &copy).map_err(|source| Error::Io {
                    op: "copying the input for dirent-order into",
                    path: copy.clone(),
                    source,
                })?;
                ctx.reordered_inputs.push((input.source.clone(), copy));
            }
            if !any {
                v.not_applicable.push(
                    "dirent-order: no input directory holds two or more entries (only --input directories are reordered)".into(),
                );
            }
        }
        let mut tried: BTreeMap<Vec<Variation>, Vec<String>> = BTreeMap::new();
        let unstable = v.unstable.clone();
        let mut changes = |set: &[Variation], v: &mut Verdict| -> Result<Vec<String>, crate::Error> {
            if let Some(c) = tried.get(set) {
                return Ok(c.clone());
            }
            let r = one(set, &ctx)?;
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
            let r = one(&[], &VaryContext { allowed_cpus: Vec::new(), reordered_inputs: Vec::new() })?;
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

/// One replay under `set`, compared with the original.
fn replay_once(
    root: &Root,
    original: &RunRecord,
    prepared: Prepared,
    set: &[Variation],
    ctx: &VaryContext,
    tol: &Tolerances,
    origin: &Origin,
) -> Result<ReplayReport, crate::Error> {
    let id = crate::fsutil::random_hex(16);
    let label = vary::label(set);
    let vary_fn =
        |spec: &mut oci_spec::runtime::Spec, cpus: &mut Vec<usize>| vary::apply(set, spec, cpus, ctx);
    let options = prepared.options;
    if set.contains(&Variation::User) {
        // The other user must be able to write the outputs, as the original could.
        let uid = original.spec.process().as_ref().map_or(0, |p| p.user().uid());
        let new = if uid == 0 { vary::VARIED_UID } else { 0 };
        for m in &options.outputs {
            std::fs::create_dir_all(&m.source)
                .and_then(|()| std::os::unix::fs::chown(&m.source, Some(new), Some(new)))
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
    Ok(compare_records(root, original, &rec, set, tol, origin))
}

/// Compare a replay's record (and kept output) with the original's.
fn compare_records(
    root: &Root,
    original: &RunRecord,
    replay: &RunRecord,
    set: &[Variation],
    tol: &Tolerances,
    origin: &Origin,
) -> ReplayReport {
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
    for (name, exp, act) in
        [("stdout", &original.stdout, &replay.stdout), ("stderr", &original.stderr, &replay.stderr)]
    {
        let (Some(exp), Some(act)) = (exp, act) else { continue };
        if exp.digest == act.digest {
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
    for (exp, act) in original.outputs.iter().zip(&replay.outputs) {
        let (Some(et), Some(at)) = (&exp.tree, &act.tree) else {
            differs.push(exp.destination.display().to_string());
            continue;
        };
        let original_dir = original_dir(&exp.source);
        let t = compare::compare_tree(et, original_dir.as_deref(), at, &act.source, &exp.destination, tol);
        for f in t.files.iter().filter(|f| f.verdict.is_difference()) {
            let key = difference_key(&t.destination, &f.path);
            if f.verdict == compare::Verdict::CouldNotCompare {
                not_compared.push(key);
            } else {
                differs.push(key);
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
    }
}

/// The verdict, for a terminal.
pub fn render(v: &Verdict) -> String {
    let mut out = format!(
        "verify {}: {}\n",
        v.run.get(..12).unwrap_or(&v.run),
        match v.verdict.as_str() {
            "reproduced" => "REPRODUCED",
            "could-not-compare" => "COULD NOT COMPARE (outputs not digested in full)",
            _ => "DIFFERS",
        }
    );
    if !v.drift.is_empty() {
        out.push_str(&replay::render_drift(&v.drift));
    }
    for (i, r) in v.replays.iter().enumerate() {
        render_replay(&format!("replay {}", i + 1), r, &mut out);
    }
    if !v.unstable.is_empty() {
        out.push_str(&format!(
            "differs on a plain replay (depends on the wall clock, randomness or scheduling): {}\n",
            v.unstable.join(", ")
        ));
    }
    if !v.varied.is_empty() {
        out.push_str(&format!("varied: {}\n", v.varied.join(", ")));
        if v.attributions.is_empty() {
            out.push_str("  no variation changes the result\n");
        }
        for a in &v.attributions {
            out.push_str(&format!("  {} changes {}\n", a.variation, a.changes.join(", ")));
            let shown = v.variation_replays.iter().find(|r| r.variation.join("+") == a.variation);
            if let Some(r) = shown {
                render_details(&only(r, &a.changes), &mut out);
            }
        }
        for n in &v.not_applicable {
            out.push_str(&format!("  not applied: {n}\n"));
        }
    }
    for r in &v.unmatched_rules {
        out.push_str(&format!("warning: --tolerance {r} matches no output file\n"));
    }
    out
}

/// `r` with only the differences named in `keep`.
fn only(r: &ReplayReport, keep: &[String]) -> ReplayReport {
    let mut r = r.clone();
    r.streams.retain(|s| keep.contains(&s.path));
    for t in &mut r.outputs {
        let dest = t.destination.clone();
        t.files.retain(|f| keep.contains(&difference_key(&dest, &f.path)));
    }
    if !keep.iter().any(|k| k == "exit") {
        r.actual_exit = r.expected_exit;
    }
    r
}

/// How a file's difference is named: `<destination>/<path>`.
fn difference_key(destination: &str, path: &str) -> String {
    if path == "." {
        destination.to_string()
    } else {
        format!("{destination}/{path}")
    }
}

fn render_replay(title: &str, r: &ReplayReport, out: &mut String) {
    let state = match (r.differs.is_empty(), r.not_compared.is_empty()) {
        (true, true) => "same",
        (true, false) => "could not compare",
        (false, _) => "differs",
    };
    out.push_str(&format!("{title} (run {}): {state}\n", r.run_id.get(..12).unwrap_or(&r.run_id)));
    render_details(r, out);
}

fn render_details(r: &ReplayReport, out: &mut String) {
    if r.expected_exit != r.actual_exit {
        let s = |c: Option<i32>| c.map_or("-".to_string(), |c| c.to_string());
        out.push_str(&format!("    exit status {} -> {}\n", s(r.expected_exit), s(r.actual_exit)));
    }
    let mut text = String::new();
    for s in &r.streams {
        s.render(&mut text);
    }
    for t in &r.outputs {
        if !t.files.is_empty() {
            t.render(&mut text);
        }
    }
    for line in text.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
}
