//! `exprun run`: one experiment, in the foreground, recorded.
//!
//! [`sequence`] is the whole run, read top to bottom: from the options the CLI
//! checked to the command's execve and back to the record. Its numbered step
//! comments, in file order, are the list in docs/architecture.md
//! (tests/architecture_doc.rs keeps the two the same):
//!
//! - `exprun run IMAGE` ([`run`]), `replay`, `verify` and `build`
//!   ([`run_with`]) enter at step 1, with an image and the options;
//! - `exprun run --bundle` ([`run_bundle`]) enters at step 6, with the plan
//!   made from the bundle's config.json;
//! - `exprun create` takes step 6 ([`run_directory`]) and step 8
//!   ([`spawn::create`], detached) and stops there; `exprun start`, another
//!   process, is its step 9.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::sys::signalfd::SignalFd;

use crate::cgroups::CgroupHost;
use crate::error::Result;
use crate::image::{ImageStore, ResolvedImage};
use crate::log;
use crate::outputs::{self, OutputDir};
use crate::plan::{self, PlanContext, RunPlan, Source as PlanSource};
use crate::record::files::{self, Budget};
use crate::record::{self, DataRecord, RunRecord};
use crate::spawn::{self, CreateOutcome};
use crate::spec::{self, options::RunOptions, pins::Determinism, SpecContext};
use crate::state::{ContainerDir, Root};

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

/// `--pull`: fetch the image from its registry at step 2, before it is resolved.
pub struct Pull<'a> {
    /// Fetch it even when the store has it (`always`), not only when the store
    /// lacks it (`missing`).
    pub always: bool,
    /// The fetch (the CLI's: registry options, a rootless user namespace).
    pub fetch: &'a dyn Fn() -> Result<()>,
}

/// A callback for a container whose init is ready.
pub type OnCreated<'a> = dyn Fn(&spawn::Created) -> Result<()> + 'a;

/// What `exprun run --bundle` brings to steps 6–12 besides its plan.
pub struct Bundle<'a> {
    /// When exprun started, for the record.
    pub created: SystemTime,
    /// The host's cgroup layout, for the record's host facts.
    pub cgroups: &'a CgroupHost,
    /// Called once init is ready, before the command starts (writes the pid
    /// file and state.json). An error kills init.
    pub on_created: &'a OnCreated<'a>,
    /// Called once the command has been exec'd (the poststart hooks).
    pub on_exec: &'a dyn Fn(),
    /// How many of exprun's fds from 3 up reach the command (`--preserve-fds`,
    /// checked open by the caller).
    pub preserve_fds: u32,
}

/// Run one experiment described by `opts`, pulling its image first when
/// `pull` says so. `command_line` is exprun's own argv.
pub fn run(
    root: &Root,
    opts: &RunOptions,
    command_line: Vec<String>,
    pull: Option<&Pull<'_>>,
) -> Result<RunResult> {
    sequence(root, Source::Image { opts, command_line, pull, replay: Replay::default() })
}

/// [`run`], for a replay of a recorded run when `replay` says so.
pub fn run_with(
    root: &Root,
    opts: &RunOptions,
    command_line: Vec<String>,
    replay: Replay<'_>,
) -> Result<RunResult> {
    sequence(root, Source::Image { opts, command_line, pull: None, replay })
}

/// `exprun run --bundle`: steps 6–12 for the plan made from a bundle.
pub fn run_bundle(root: &Root, plan: &RunPlan, bundle: Bundle<'_>) -> Result<RunResult> {
    sequence(root, Source::Bundle { plan, bundle })
}

/// Where [`sequence`] starts.
enum Source<'a> {
    /// An image and the options: steps 1–5 make the plan.
    Image { opts: &'a RunOptions, command_line: Vec<String>, pull: Option<&'a Pull<'a>>, replay: Replay<'a> },
    /// A plan already made, from an OCI bundle.
    Bundle { plan: &'a RunPlan, bundle: Bundle<'a> },
}

/// What steps 1–5 hand to the rest of the sequence.
struct Prepared<'a> {
    plan: &'a RunPlan,
    created: SystemTime,
    cgroups: &'a CgroupHost,
    inputs: Vec<DataRecord>,
    output_dirs: Vec<OutputDir>,
    store_lock: Option<crate::fsutil::Lock>,
    quiet: bool,
    keep_upper_at: Option<PathBuf>,
    stop_on_signal: bool,
    on_created: Option<&'a OnCreated<'a>>,
    on_exec: Option<&'a dyn Fn()>,
    preserve_fds: u32,
}

/// The run, from the checked options to the record, steps in order.
fn sequence(root: &Root, source: Source<'_>) -> Result<RunResult> {
    let detected;
    let planned;
    let mut p = match source {
        Source::Image { opts, command_line, pull, replay } => {
            let created = SystemTime::now();
            detected = CgroupHost::detect().map_err(plan::Error::from)?;
            let cgroups = &detected;

            // 1. Clean up after runs whose exprun died.
            let cleaned = root.cleanup_stale();
            log::debug(|| format!("step 1: cleaned up {} stale run(s)", cleaned.len()));

            // 2. Resolve the image, under the store's shared lock (pulled first
            //    with `--pull`): `image gc` must not remove its layers before
            //    plan.json, which names them, exists (step 6).
            let (store, store_lock, image) = resolve_image(root, &opts.image, pull)?;
            let layer_dirs: Vec<PathBuf> = image.layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect();
            log::debug(|| format!("step 2: resolved {} to {}", opts.image, image.manifest_digest));

            // 3. Build the OCI spec from the image config and the options, with
            //    the deterministic profile decided (or, for a replay, as
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
                    rootless: rootless(cgroups, opts.cgroup_parent.as_deref()),
                },
            )?;
            let mut cpus = determinism.cpuset();
            if let Some((_, vary)) = replay.variation {
                vary(&mut spec, &mut cpus);
            }
            log::debug(|| "step 3: runtime spec built".into());

            // 4. Build and check the plan: cgroup placement, limits, mounts, user.
            let host = plan::Host::gather(cgroups, Some(&spec), opts.cgroup_parent.as_deref());
            let mut plan = plan::build(
                spec,
                PlanContext {
                    id: &id,
                    name: opts.name.as_deref(),
                    command_line,
                    state_dir: &state_dir,
                    source: PlanSource::Image { image: &image, layers_root: &store.layers_root() },
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
            //    The plan checked the seccomp profile; its program is compiled
            //    (or taken from the cache) here, before anything is cloned.
            crate::seccomp::compile_planned(plan.seccomp.as_mut(), &plan.spec, &root.cache_dir())
                .map_err(plan::Error::from)?;
            //    Nothing of the run exists yet: the last moment to re-exec when
            //    the exec trampoline cannot serve it.
            crate::selfexe::settle(&plan).map_err(crate::Error::Usage)?;
            log::debug(|| format!("step 4: planned run {id}"));

            // 5. Digest the inputs and open the outputs, before the run exists:
            //    a failure here leaves nothing (the output directories made
            //    here stay: they are the user's, like what the run writes there).
            let inputs = digest_inputs(root, &plan, replay.inputs)?;
            let output_dirs = open_outputs(root, &mut plan)?;
            log::debug(|| format!("step 5: digested {} input(s)", inputs.len()));

            planned = plan;
            Prepared {
                plan: &planned,
                created,
                cgroups,
                inputs,
                output_dirs,
                store_lock: Some(store_lock),
                quiet: replay.quiet,
                keep_upper_at: replay.keep_upper_at,
                stop_on_signal: replay.stop_on_signal,
                on_created: None,
                on_exec: None,
                preserve_fds: 0,
            }
        }
        Source::Bundle { plan, bundle } => Prepared {
            plan,
            created: bundle.created,
            cgroups: bundle.cgroups,
            inputs: Vec::new(),
            output_dirs: Vec::new(),
            store_lock: None,
            quiet: false,
            keep_upper_at: None,
            stop_on_signal: false,
            on_created: Some(bundle.on_created),
            on_exec: Some(bundle.on_exec),
            preserve_fds: bundle.preserve_fds,
        },
    };
    let plan = p.plan;
    // Before anything is made: a root whose key is unusable cannot record the
    // run, nor one whose `runs/` cannot be made private.
    let key = record::Key::open(root.dir())?;
    root.private_runs_dir()?;
    // `verify`'s replays keep quiet: the run they replay said it already.
    if !p.quiet {
        note_no_cgroup(plan);
    }

    // 6. Block the forwarded signals, make the run directory with plan.json
    //    (locked), claim `--name`.
    let (signals, container) = run_directory(root, plan)?;
    drop(p.store_lock.take());
    log::debug(|| format!("step 6: created {}", plan.state_dir.display()));

    // 7. Start the record: exprun's digest, host facts.
    let exprun = record::exprun_info(&root.cache_dir());
    let mut rec = RunRecord::new(plan, p.created, exprun, record::host::facts(p.cgroups), &key);
    rec.inputs = std::mem::take(&mut p.inputs);
    let result = (|| -> Result<(i32, Option<String>)> {
        // 8. The create half: cgroup, clone into namespaces, init builds the
        //    rootfs and reports Ready.
        let (parent_io, mut child_io) = spawn::stdio::prepare(plan.process.terminal, plan.interactive)
            .map_err(|source| spawn::Error::Io { op: "setting up stdio", source })?;
        child_io.preserved = p.preserve_fds;
        let created = match spawn::create(plan, child_io, &signals, spawn::Mode::Foreground)? {
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

        // 9. The start half: init execs the command.
        let raw = plan.process.terminal.then(spawn::stdio::RawMode::enable);
        let started = match created.start() {
            Ok(s) => s,
            Err(e) => {
                drop(raw);
                created.kill();
                return Err(e.into());
            }
        };

        // 10. The foreground wait: output copied and hashed, signals forwarded,
        //     init reaped. The output's first bytes are kept with the record, for
        //     `verify`'s diffs.
        let sink = spawn::wait::Sink {
            keep_in: Some(root.runs_dir().join(&plan.id)),
            quiet: p.quiet,
            stop_on_signal: p.stop_on_signal,
        };
        let waited = spawn::wait::foreground(&created, started, parent_io, &signals, &sink, p.on_exec);
        drop(raw);

        // 11. Read the cgroup's usage, remove the cgroup, digest the outputs.
        let usage = created.cgroup.usage();
        let destroyed = created.cgroup.destroy();
        let outcome = waited?;
        destroyed.map_err(spawn::Error::from)?;
        log::debug(|| {
            format!("step 11: command ended after {:.3} ms; cgroup removed", outcome.wall_seconds * 1000.0)
        });
        rec.finish(&outcome, usage.clone());
        digest_outputs(plan, &mut rec, &p.output_dirs);
        let note = if let Some(f) = &outcome.exec_failure {
            Some(f.message.clone())
        } else if usage.oom_kills > 0 {
            let limit =
                plan.cgroup.limits.memory_bytes.map(|b| format!(" of {} MiB", b >> 20)).unwrap_or_default();
            Some(format!(
                "the container ran out of memory: the OOM killer killed {} process(es) at the memory limit{limit}; raise --memory (files in /dev/shm and other tmpfs mounts count against it)",
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
        Ok((outcome.exit_code(), note))
    })();
    if let Err(e) = &result {
        rec.exit.message = Some(e.to_string());
    }

    // 12. Write the record, then remove the run directory: killed in between,
    //     exprun leaves the record, and the next cleanup (step 1) only removes
    //     the directory; killed before, it leaves the directory, which cleanup
    //     records as lost. A bundle's state.json goes first, since cleanup
    //     leaves a directory that has one to `exprun delete`.
    let _ = std::fs::remove_file(plan.state_dir.join(crate::container::STATE_FILE));
    if let Err(e) = rec.write(&root.runs_dir()) {
        // The directory stays, for cleanup to record the run as lost.
        drop(container);
        return Err(e.into());
    }
    log::debug(|| "step 12: record written".into());
    let keep_upper = plan
        .keep
        .then(|| p.keep_upper_at.take().unwrap_or_else(|| root.runs_dir().join(&plan.id).join("upper")));
    let removed = container.remove(keep_upper.as_deref());
    log::debug(|| "step 12: run directory removed".into());
    let (exit_code, note) = result?;
    removed?;
    Ok(RunResult { exit_code, run_id: plan.id.clone(), note })
}

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

/// Step 2: the image `reference` names, under the store's shared lock, which
/// the caller holds until the run directory exists. With `pull`, the image is
/// fetched first (`always`), or when the store lacks it (`missing`): the
/// reference is resolved once either way.
fn resolve_image(
    root: &Root,
    reference: &str,
    pull: Option<&Pull<'_>>,
) -> Result<(ImageStore, crate::fsutil::Lock, ResolvedImage)> {
    let store = ImageStore::open(&root.store_dir())?;
    if let Some(pull) = pull.filter(|p| p.always) {
        (pull.fetch)()?;
    }
    let lock = store.lock_shared()?;
    match (store.resolve(reference), pull) {
        (Ok(image), _) => Ok((store, lock, image)),
        (Err(crate::image::Error::NotFound { .. }), Some(pull)) if !pull.always => {
            // The fetch publishes into the store: not under our shared lock.
            drop(lock);
            (pull.fetch)()?;
            let lock = store.lock_shared()?;
            let image = store.resolve(reference)?;
            Ok((store, lock, image))
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// Step 5's inputs: digested before the run exists (through the root's input
/// digest cache), after those a replay has digested already.
fn digest_inputs(root: &Root, plan: &RunPlan, already: Option<Vec<DataRecord>>) -> Result<Vec<DataRecord>> {
    let mut inputs = already.unwrap_or_default();
    let cache = root.cache_dir();
    for m in plan.inputs.iter().skip(inputs.len()) {
        let label = format!("input {}", m.destination.display());
        let tree =
            files::digest_input(&m.source, &label, Some(&cache)).map_err(|source| plan::Error::Source {
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
    Ok(inputs)
}

/// Step 5's outputs: each opened so that no other user can redirect it (see
/// `outputs`); init binds that very directory, and step 11 reads it through the
/// same descriptor. An output under `runs/` (a replay's, by default) gets its
/// run directory made private first, as every directory there is.
fn open_outputs(root: &Root, plan: &mut RunPlan) -> Result<Vec<OutputDir>> {
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
    Ok(output_dirs)
}

/// Step 6, shared with `exprun create`: block the signals exprun handles (they
/// queue on the returned signalfd until the wait reads and forwards them, so
/// none is lost and none kills exprun before it has cleaned up), then make the
/// run directory with plan.json, locked, then claim the run's name. The name
/// comes last: a name whose holder has neither a run directory nor a record is
/// taken back as left by a dead exprun, so it must never point at a run that
/// is still being set up.
pub fn run_directory(root: &Root, plan: &RunPlan) -> Result<(SignalFd, ContainerDir)> {
    let signals = spawn::block_signals()?;
    let container = root.create_container(plan)?;
    if let Some(name) = &plan.name {
        if let Err(e) = root.claim_name(name, &plan.id) {
            let _ = container.remove(None);
            return Err(e.into());
        }
    }
    Ok((signals, container))
}

/// Say on stderr, in one line, that a run has no cgroup and why, unless the
/// caller said that is meant (`--no-limits`).
pub fn note_no_cgroup(plan: &RunPlan) {
    if let Some(n) = plan.no_cgroup.as_ref().filter(|n| n.note) {
        crate::error::print(&n.note());
    }
}

/// Step 11's output digests: bounded by the run's digest limit, after removing
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
