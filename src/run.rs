//! `exprun run`: one experiment, in the foreground, recorded.
//!
//! The ordered steps (mirrored in docs/architecture.md):
//! 1. clean up after runs whose exprun died (cheap when there are none);
//! 2. resolve the image in the store, under the store's shared lock;
//! 3. build the OCI spec from the image config and the options (no side effects);
//! 4. build and check the plan: cgroup placement, limits, mounts, user (no side effects);
//! 5. digest the inputs, before anything is created; make missing output dirs;
//! 6. block the forwarded signals, so none is lost from here on; create the run
//!    directory (locked) with plan.json; claim `--name`;
//! 7. start the record (exprun's digest, host facts);
//! 8. create half: cgroup, clone into namespaces, init builds the rootfs → Ready;
//! 9. start half + foreground wait: output copied and hashed, signals forwarded;
//! 10. digest the outputs, read cgroup usage, remove the cgroup, write the record,
//!     remove the run directory; exit with the command's status.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::sys::signalfd::SignalFd;

use crate::cgroups::CgroupHost;
use crate::error::Result;
use crate::image::ImageStore;
use crate::log;
use crate::outputs::{self, OutputDir};
use crate::plan::{self, PlanContext, RunPlan, Source};
use crate::record::files::{self, digest_tree, Budget};
use crate::record::{self, DataRecord, RunRecord};
use crate::spawn::{self, CreateOutcome};
use crate::spec::{self, options::RunOptions, pins::Determinism, SpecContext};
use crate::state::Root;

/// What `exprun run` reports back to the CLI.
pub struct RunResult {
    /// exprun's exit status.
    pub exit_code: i32,
    /// The run id.
    pub run_id: String,
    /// A note for the user (OOM kill, command not found, ...), printed on stderr.
    pub note: Option<String>,
}

/// What `exprun replay` and `exprun verify` add to a run.
#[derive(Default)]
pub struct Replay<'a> {
    /// The run id to use (a replay knows it before, for its output directories).
    pub id: Option<String>,
    /// The recorded run this one replays.
    pub of: Option<String>,
    /// The command replaying it.
    pub made_by: Option<crate::record::MadeBy>,
    /// Its deterministic profile, used as recorded instead of decided again.
    pub pins: Option<&'a Determinism>,
    /// `verify --vary`: the variation's name, and its change to the spec and to
    /// the CPUs the command is bound to.
    pub variation: Option<(&'a str, &'a Vary<'a>)>,
    /// The inputs, already digested (replay digests them to check for drift).
    pub inputs: Option<Vec<DataRecord>>,
    /// What differs from the replayed run, for the record.
    pub drift: Vec<crate::record::Drift>,
    /// Do not copy the container's output to exprun's stdout and stderr.
    pub quiet: bool,
    /// With `keep`: where the writable layer goes after the run, instead of the
    /// record's directory (`exprun build` captures it from there).
    pub keep_upper_at: Option<PathBuf>,
    /// A terminating signal to exprun kills the container instead of being
    /// passed on to it (`exprun build`: an interrupt aborts the build).
    pub stop_on_signal: bool,
}

/// A change to a run's spec and CPU binding (`verify --vary`).
pub type Vary<'a> = dyn Fn(&mut oci_spec::runtime::Spec, &mut Vec<usize>) + 'a;

/// Whether this run is rootless (exprun is not root): its caller then maps to
/// root in a user namespace, and its cgroup must be one delegated to the caller.
fn rootless(cgroups: &CgroupHost, parent: Option<&str>) -> Option<spec::Rootless> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    (uid != 0).then(|| spec::Rootless {
        cgroup: plan::cgroup::delegated::delegated_parent(&plan::Host::gather(cgroups, None, parent), parent)
            .is_ok(),
        ..spec::Rootless::of_caller(uid, gid)
    })
}

/// Run one experiment described by `opts`. `command_line` is exprun's own argv.
pub fn run(root: &Root, opts: &RunOptions, command_line: Vec<String>) -> Result<RunResult> {
    run_with(root, opts, command_line, Replay::default())
}

/// [`run`], for a replay of a recorded run when `replay` says so.
pub fn run_with(
    root: &Root,
    opts: &RunOptions,
    command_line: Vec<String>,
    replay: Replay<'_>,
) -> Result<RunResult> {
    let created = SystemTime::now();
    let cgroups = CgroupHost::detect().map_err(plan::Error::from)?;
    let rootless = rootless(&cgroups, opts.cgroup_parent.as_deref());
    // 1.
    let cleaned = root.cleanup_stale();
    log::debug(|| format!("step 1: cleaned up {} stale run(s)", cleaned.len()));

    // 2. The shared store lock keeps `image gc` from removing the layers between
    //    resolving them and recording them in plan.json (step 6).
    let store = ImageStore::open(&root.store_dir())?;
    let store_lock = store.lock_shared()?;
    let image = store.resolve(&opts.image)?;
    let layer_dirs: Vec<PathBuf> = image.layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect();
    log::debug(|| format!("step 2: resolved {} to {}", opts.image, image.manifest_digest));

    // 3. The spec, with the deterministic profile decided (or, for a replay, as
    //    recorded); a variation changes the spec last.
    let id = replay.id.clone().unwrap_or_else(|| crate::fsutil::random_hex(16));
    let state_dir = root.containers_dir().join(&id);
    let host_rlimits = spec::caller_rlimits();
    let (mut spec, determinism) = spec::from_image(
        opts,
        &SpecContext {
            image: &image,
            layer_dirs: &layer_dirs,
            state_dir: &state_dir,
            host_rlimits: &host_rlimits,
            host_cpus: crate::record::host::cpus_online(),
            pins: replay.pins,
            rootless,
        },
    )?;
    let mut cpus = determinism.cpuset();
    if let Some((_, vary)) = replay.variation {
        vary(&mut spec, &mut cpus);
    }

    log::debug(|| "step 3: runtime spec built".into());

    // 4.
    let host = plan::Host::gather(&cgroups, Some(&spec), opts.cgroup_parent.as_deref());
    let mut plan = plan::build(
        spec,
        PlanContext {
            id: &id,
            name: opts.name.as_deref(),
            command_line,
            state_dir: &state_dir,
            source: Source::Image { image: &image, layers_root: &store.layers_root() },
            host: &host,
            cgroup_parent: opts.cgroup_parent.as_deref(),
            systemd_cgroup: false,
            interactive: opts.interactive,
            inputs: opts.inputs.clone(),
            outputs: opts.outputs.clone(),
            keep: opts.keep,
            scratch_bytes: opts.storage_size,
            cpu_affinity: cpus,
            request: Some(plan::Request {
                options: opts.clone(),
                determinism,
                replay_of: replay.of.clone(),
                variation: replay.variation.map(|(name, _)| name.to_string()),
                made_by: replay.made_by,
                drift: replay.drift.clone(),
            }),
        },
    )?;
    //    The plan checked the seccomp profile; its program is compiled (or
    //    taken from the cache) here, in exprun, before anything is cloned.
    crate::seccomp::compile_planned(plan.seccomp.as_mut(), &plan.spec, &root.cache_dir())
        .map_err(plan::Error::from)?;

    log::debug(|| format!("step 4: planned run {id}"));

    // 5. Inputs are digested before the run exists, so a failure here leaves
    //    nothing; missing output directories are made (and stay: they are the
    //    user's, like the files the run will write there).
    let mut inputs = replay.inputs.unwrap_or_default();
    for m in plan.inputs.iter().skip(inputs.len()) {
        let tree = digest_tree(&m.source).map_err(|source| plan::Error::Source {
            option: format!("--input {}", m.destination.display()),
            path: m.source.clone(),
            source,
        })?;
        inputs.push(DataRecord {
            source: m.source.clone(),
            destination: m.destination.clone(),
            tree: Some(tree),
            error: None,
        });
    }
    //    An output is opened so that no other user can redirect it (see
    //    `outputs`); init binds that very directory, and step 10 reads it
    //    through the same descriptor.
    //    An output under `runs/` (a replay's, by default) gets its run
    //    directory made private first, as every directory there is.
    let runs = root.private_runs_dir()?;
    for m in &plan.outputs {
        if let Some(first) = m.source.strip_prefix(&runs).ok().and_then(|rel| rel.components().next()) {
            let dir = runs.join(first);
            crate::fsutil::create_private_dir_all(&dir).map_err(|source| crate::state::Error::Io {
                op: "creating",
                path: dir,
                source,
            })?;
        }
    }
    let caller = nix::unistd::geteuid().as_raw();
    // In a user namespace the command's uid is not a host uid of its own.
    let writer = plan.user_ns.is_none().then_some(plan.process.uid);
    let mut output_dirs = Vec::new();
    for m in &plan.outputs {
        let dir = outputs::open(&m.source, caller, writer)?;
        for op in plan.mounts.iter_mut().filter(|op| op.bind && Path::new(&op.source) == m.source) {
            op.source_id = Some(dir.id);
        }
        output_dirs.push(dir);
    }

    log::debug(|| format!("step 5: digested {} input(s)", inputs.len()));
    run_planned(
        root,
        &plan,
        Planned {
            created,
            cgroups: &cgroups,
            inputs,
            output_dirs,
            store_lock: Some(store_lock),
            on_created: None,
            on_exec: None,
            quiet: replay.quiet,
            keep_upper_at: replay.keep_upper_at,
            stop_on_signal: replay.stop_on_signal,
            preserve_fds: 0,
        },
    )
}

/// A callback for a container whose init is ready.
pub type OnCreated<'a> = dyn Fn(&spawn::Created) -> Result<()> + 'a;

/// What a planned run brings to steps 6–10 besides its plan.
pub struct Planned<'a> {
    /// When exprun started, for the record.
    pub created: SystemTime,
    /// The host's cgroup layout, for the record's host facts.
    pub cgroups: &'a CgroupHost,
    /// The digested inputs (step 5).
    pub inputs: Vec<DataRecord>,
    /// The opened `--output` directories (step 5), in the plan's order.
    pub output_dirs: Vec<OutputDir>,
    /// The store's shared lock, released once the run directory (with the
    /// layers in plan.json) exists.
    pub store_lock: Option<crate::fsutil::Lock>,
    /// Called once init is ready, before the command starts (`run --bundle`
    /// writes its pid file and state.json here). An error kills init.
    pub on_created: Option<&'a OnCreated<'a>>,
    /// Called once the command has been exec'd (`run --bundle`'s poststart hooks).
    pub on_exec: Option<&'a dyn Fn()>,
    /// Do not copy the container's output to exprun's own (`verify`).
    pub quiet: bool,
    /// With `keep`: where the writable layer goes instead of `runs/<id>/upper`.
    pub keep_upper_at: Option<PathBuf>,
    /// A terminating signal to exprun kills the container instead of being passed on.
    pub stop_on_signal: bool,
    /// How many of exprun's fds from 3 up reach the command (`run --bundle
    /// --preserve-fds`, checked open by the caller).
    pub preserve_fds: u32,
}

/// Steps 6–10 for a planned run, whatever its source: a foreground container,
/// supervised to its end and recorded.
pub fn run_planned(root: &Root, plan: &RunPlan, mut p: Planned<'_>) -> Result<RunResult> {
    // Before anything is made: a root whose key is unusable cannot record the
    // run, nor one whose `runs/` cannot be made private.
    let key = record::Key::open(root.dir())?;
    root.private_runs_dir()?;
    // `verify`'s replays keep quiet: the run they replay said it already.
    if !p.quiet {
        note_no_cgroup(plan);
    }
    // 6. From here on a signal must not kill exprun before it has cleaned up:
    //    block the ones we handle; they queue on the signalfd until the wait reads
    //    (and forwards) them.
    let signals = spawn::block_signals()?;
    // The run directory first, then the name: a name whose holder has neither a
    // run directory nor a record is taken back as left by a dead exprun, so it
    // must never point at a run that is still being set up.
    let container = root.create_container(plan)?;
    if let Some(name) = &plan.name {
        if let Err(e) = root.claim_name(name, &plan.id) {
            let _ = container.remove(None);
            return Err(e.into());
        }
    }
    drop(p.store_lock.take());
    log::debug(|| format!("step 6: created {}", plan.state_dir.display()));

    // 7.
    let exprun = record::exprun_info(&root.cache_dir());
    let mut rec = RunRecord::new(plan, p.created, exprun, record::host::facts(p.cgroups), &key);
    rec.inputs = std::mem::take(&mut p.inputs);
    let result = execute(plan, &mut rec, &signals, &p, &root.runs_dir());

    // 10. Whatever happened, the record is written and the run directory removed.
    let keep_upper = plan
        .keep
        .then(|| p.keep_upper_at.take().unwrap_or_else(|| root.runs_dir().join(&plan.id).join("upper")));
    let cleanup = container.remove(keep_upper.as_deref());
    if let Err(e) = &result {
        rec.exit.message = Some(e.to_string());
    }
    log::debug(|| "step 10: run directory removed".into());
    rec.write(&root.runs_dir())?;
    log::debug(|| "step 10: record written".into());
    let (exit_code, note) = result?;
    cleanup?;
    Ok(RunResult { exit_code, run_id: plan.id.clone(), note })
}

/// Say on stderr, in one line, that a run has no cgroup and why, unless the
/// caller said that is meant (`--no-limits`).
pub fn note_no_cgroup(plan: &RunPlan) {
    if let Some(n) = plan.no_cgroup.as_ref().filter(|n| n.note) {
        crate::error::print(&n.note());
    }
}

/// Steps 8–10 for a planned run; fills in `rec`.
fn execute(
    plan: &RunPlan,
    rec: &mut RunRecord,
    signals: &SignalFd,
    p: &Planned<'_>,
    runs_dir: &std::path::Path,
) -> Result<(i32, Option<String>)> {
    // 8. The create half.
    let (parent_io, mut child_io) = spawn::stdio::prepare(plan.process.terminal, plan.interactive)
        .map_err(|source| spawn::Error::Io { op: "setting up stdio", source })?;
    child_io.preserved = p.preserve_fds;
    let created = match spawn::create(plan, child_io, signals, spawn::Mode::Foreground)? {
        CreateOutcome::Ready(c) => c,
        CreateOutcome::CommandFailed(f) => {
            rec.status = record::Status::NotStarted;
            rec.exit.code = Some(f.exit_code);
            rec.exit.message = Some(f.message.clone());
            return Ok((f.exit_code, Some(f.message)));
        }
    };
    rec.executable = Some(created.exe.clone());
    if let Err(e) = p.on_created.map_or(Ok(()), |f| f(&created)) {
        created.kill();
        return Err(e);
    }
    log::debug(|| format!("step 8: container init {} ready to exec {}", created.pid, created.exe));

    // 9. The start half and the wait.
    let raw = plan.process.terminal.then(spawn::stdio::RawMode::enable);
    // The output's first bytes are kept with the record, for `verify`'s diffs.
    let sink = spawn::wait::Sink {
        keep_in: Some(runs_dir.join(&plan.id)),
        quiet: p.quiet,
        stop_on_signal: p.stop_on_signal,
    };
    let waited = spawn::wait::foreground(&created, parent_io, signals, &sink, p.on_exec);
    drop(raw);
    let usage = created.cgroup.usage();
    let destroyed = created.cgroup.destroy();
    let outcome = waited?;
    destroyed.map_err(spawn::Error::from)?;
    log::debug(|| {
        format!("step 9: command ended after {:.3} ms; cgroup removed", outcome.wall_seconds * 1000.0)
    });

    // 10.
    rec.finish(&outcome, usage.clone());
    digest_outputs(plan, rec, &p.output_dirs);
    let code = outcome.exit_code();
    let note = if let Some(f) = &outcome.exec_failure {
        Some(f.message.clone())
    } else if usage.oom_kills > 0 {
        let limit =
            plan.cgroup.limits.memory_bytes.map(|b| format!(" of {} MiB", b >> 20)).unwrap_or_default();
        Some(format!(
            "the container ran out of memory: the OOM killer killed {} process(es) at the memory limit{limit}; raise --memory",
            usage.oom_kills
        ))
    } else if usage.pids_limit_hits > 0 {
        Some(format!(
            "{} fork(s) failed at the process limit (--pids-limit {})",
            usage.pids_limit_hits,
            plan.cgroup.limits.pids_max.unwrap_or_default()
        ))
    } else {
        None
    };
    Ok((code, note))
}

/// Step 10's output digests: bounded by the run's digest limit, after removing
/// what the output does not keep (reported here on stderr, and in the record).
fn digest_outputs(plan: &RunPlan, rec: &mut RunRecord, dirs: &[OutputDir]) {
    let limit = plan
        .request
        .as_ref()
        .and_then(|r| r.options.output_digest_limit)
        .unwrap_or(files::DEFAULT_DIGEST_LIMIT);
    let mut budget = if limit == u64::MAX { Budget::unlimited() } else { Budget::of(limit) };
    for (i, (m, r)) in plan.outputs.iter().zip(rec.outputs.iter_mut()).enumerate() {
        let Some(dir) = dirs.get(i) else {
            r.error = Some(format!("{} was not opened by exprun; not digested", m.source.display()));
            continue;
        };
        let tree = match files::digest_at(dir.fd.as_fd(), &mut budget, m.keep) {
            Ok(t) => t,
            Err(e) => {
                r.error = Some(format!("digesting {}: {e}", m.source.display()));
                continue;
            }
        };
        // The container named these files: escaped for the terminal.
        let dest = m.destination.display();
        for c in &tree.cleaned {
            crate::error::print(&format_args!("output {dest}: {}: {}", c.path, c.change));
        }
        if let Some(why) = &tree.incomplete {
            crate::error::print(&format_args!("output {dest}: incomplete digest: {why}"));
        }
        r.tree = Some(tree);
    }
}
