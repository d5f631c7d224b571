//! `exprun runs ...` (the run records) and `exprun gc`.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Subcommand, ValueEnum};

use super::out::{out, outln};
use super::Globals;
use crate::error::{Error, Result};
use crate::record::{diff, export, for_terminal, index, select, RunRecord, Status};

/// `println!` of a line made from a record: control characters escaped, so
/// that what a container put into its record cannot drive the terminal.
macro_rules! say {
    ($($arg:tt)*) => {
        outln!("{}", for_terminal(&format!($($arg)*)))
    };
}

/// The `runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List recorded runs, oldest first
    #[command(after_help = "The replays that `exprun verify` made are left out unless --all is given; \
each record says which run it replays (replay_of) and what made it (made_by). All the filters given \
must match. Exit status: 0, or 125 on a bad filter value.")]
    Ls {
        /// Print the records' summaries as a JSON array
        #[arg(long)]
        json: bool,
        /// Also list the replays `exprun verify` made
        #[arg(short = 'a', long)]
        all: bool,
        /// Only runs of this image: the reference as given, the name:tag it
        /// resolved through (a name alone means name:latest), or the manifest
        /// digest or the start of its hex (4 digits at least)
        #[arg(long, value_name = "IMAGE", value_parser = parse_nonempty)]
        image: Option<String>,
        /// Only the runs of this --name; a `*` at the end matches any rest
        #[arg(long, value_name = "NAME", value_parser = parse_nonempty)]
        name: Option<String>,
        /// Only runs that ended so: exited, killed, not-started, failed, lost or supervised
        #[arg(long, value_name = "STATUS", value_parser = parse_status)]
        status: Option<Status>,
        /// Only runs whose spec has the annotation KEY=VALUE (a bundle's, or
        /// containerd's); repeat for several, all must match
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Only runs created since then: a duration back from now (30m, 2h,
        /// 7days, 1week) or a UTC date or time (2026-12-01, 2026-12-01T10:00:00Z)
        #[arg(long, value_name = "DURATION|DATE", value_parser = parse_when)]
        since: Option<SystemTime>,
        /// Only the containers of this Kubernetes pod
        #[arg(long, value_name = "NAME")]
        pod: Option<String>,
        /// Only the containers of pods in this Kubernetes namespace
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// Only the pod containers of this name
        #[arg(long, value_name = "NAME")]
        container: Option<String>,
    },
    /// Show one run's record
    Show {
        /// Run name, id or id prefix
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        run: Option<String>,
        /// Show the most recently created run
        #[arg(short = 'l', long)]
        latest: bool,
        /// Print the whole record as JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete run records (and any writable layer kept with --keep)
    Rm {
        /// Run names, ids or id prefixes
        #[arg(required = true)]
        runs: Vec<String>,
    },
    /// Delete the records of old runs, or of replays, keeping what others depend on
    #[command(
        long_about = "Delete the records of runs (and any writable layer kept with --keep) that all \
the options given select: --older-than, --keep-last, --replays-only (at least one of them). A record \
another record depends on is kept, and said so, unless --force: a run that is replayed by a record \
that stays (replay_of), or whose directory holds an input or output of one (a replay's outputs, a \
fetched run's artifact).",
        after_help = "Exit status: 0, or 125 on a bad option value or when a record could not be \
removed (a run still running)."
    )]
    Prune {
        /// Only runs created before then: a duration back from now (30m, 2h,
        /// 7days, 1week) or a UTC date or time (2026-12-01, 2026-12-01T10:00:00Z)
        #[arg(long, value_name = "DURATION|DATE", value_parser = parse_when)]
        older_than: Option<SystemTime>,
        /// Keep the N newest of the records considered (all, or the replays
        /// with --replays-only)
        #[arg(long, value_name = "N", value_parser = parse_count)]
        keep_last: Option<usize>,
        /// Only the records of replays (made by `exprun replay` or `exprun verify`)
        #[arg(long)]
        replays_only: bool,
        /// Say what would be removed and kept; remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Remove records that others depend on too (and say which)
        #[arg(long)]
        force: bool,
    },
    /// Show what differs between two runs: context and outcome
    #[command(
        long_about = "Show what differs between two runs, one line per difference, in two groups. \
Context: image, argv, environment (per variable), cwd, user, hostname, limits, mounts, inputs \
(per file), seccomp profile, exprun version and binary, host facts, and every other field of \
the record. Outcome: status, exit code and signal, stdout and stderr digests, outputs (per file). \
Never compared: run id, name, exprun command line, times, resource usage, forwarded signals; \
the run id is blanked out of paths before comparing. \
For an output file of JSON, CSV or TSV of at most 1 MiB whose two versions are still where the runs \
wrote them, the values that changed are listed below it (JSON paths or CSV cells, old -> new), \
compared as `exprun verify` compares them: numbers within --rtol, --atol or a --tolerance rule are \
marked `within tolerance`.",
        after_help = "Exit status: 0 if the records \
agree in context and outcome, 1 if they differ (a file whose values are all within tolerance still \
differs), 125 on error (as with diff(1)). A record over \
256 MiB is refused (EXPRUN_MAX_RECORD_SIZE changes that)."
    )]
    Diff {
        /// First run: name, id or id prefix
        run_a: String,
        /// Second run: name, id or id prefix
        run_b: String,
        /// Print the differences as a JSON object
        #[arg(long)]
        json: bool,
        /// List at most N differences per section (an output or input tree, the
        /// environment, the mounts, ...), then how many more; `all` lists every one
        #[arg(long, value_name = "N|all", default_value = "100", value_parser = parse_limit)]
        limit: Limit,
        #[command(flatten)]
        tolerances: super::verify::ToleranceArgs,
    },
    /// Export a run's record as an RO-Crate or an in-toto Statement
    #[command(
        after_help = "Formats:\n  ro-crate  RO-Crate 1.1 Process Run Crate: ro-crate-metadata.json\n  \
in-toto   in-toto Statement v1, SLSA Provenance v1 predicate; subjects: the output files and\n            \
the non-empty stdout and stderr\n\nFiles are described by the digests in the record and referred to \
where they lie on the host (file:// URIs, or paths relative to the crate directory when they are \
under it); nothing is copied or read again."
    )]
    Export {
        /// Run name, id or id prefix
        run: String,
        /// Output format
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// ro-crate: the crate directory, created if missing, to write ro-crate-metadata.json
        /// into; in-toto: the file to write. Without it, the JSON goes to stdout
        #[arg(short = 'o', long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace an existing metadata or statement file
        #[arg(long, requires = "output")]
        force: bool,
    },
}

/// `runs diff --limit`: differences listed per section (`None`: all).
#[derive(Debug, Clone, Copy)]
pub struct Limit(Option<usize>);

fn parse_limit(s: &str) -> std::result::Result<Limit, String> {
    match s {
        "all" => Ok(Limit(None)),
        _ => match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Limit(Some(n))),
            _ => Err("expected a number of differences from 1 up, or `all`".into()),
        },
    }
}

fn parse_nonempty(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() {
        return Err("expected a value, got an empty one".into());
    }
    Ok(s.to_string())
}

fn parse_status(s: &str) -> std::result::Result<Status, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| "expected one of exited, killed, not-started, failed, lost, supervised".to_string())
}

fn parse_label(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE (an annotation of the run's spec), e.g. project=mnist".into()),
    }
}

fn parse_count(s: &str) -> std::result::Result<usize, String> {
    s.parse().map_err(|_| "expected a number of records, 0 or more".to_string())
}

/// `--since` and `--older-than`: a duration back from now, or a UTC date or time.
fn parse_when(s: &str) -> std::result::Result<SystemTime, String> {
    let why = || {
        "expected a duration back from now (30m, 2h, 7days, 1week) or a UTC date or time \
         (2026-12-01, 2026-12-01T10:00:00Z)"
            .to_string()
    };
    if s.starts_with(|c: char| c.is_ascii_digit()) && s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        return humantime::parse_rfc3339_weak(&format!("{s} 00:00:00")).map_err(|_| why());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return SystemTime::now().checked_sub(d).ok_or_else(why);
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| why())
}

/// What `runs export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// RO-Crate 1.1, Process Run Crate profile 0.5
    RoCrate,
    /// in-toto Statement v1, SLSA Provenance v1 predicate
    InToto,
}

/// Run one `runs` subcommand.
pub fn run(globals: &Globals, cmd: RunsCommand) -> Result<i32> {
    let root = globals.state();
    match cmd {
        RunsCommand::Ls { json, all, image, name, status, labels, since, pod, namespace, container } => {
            let pods = super::runs_ls::PodFilter { pod, namespace, container };
            let filter = select::Filter { all, image, name, status, labels, since };
            super::runs_ls::ls(&root.runs_dir(), &filter, &pods, json)
        }
        RunsCommand::Show { run, latest: _, json } => {
            // clap makes RUN and --latest exclusive and requires one of them.
            let id = match run {
                Some(run) => root.resolve_run(&run)?,
                None => root.latest_run()?,
            };
            let r = root.read_record(&id)?;
            if json {
                outln!(
                    "{}",
                    crate::record::json_for_terminal(&serde_json::to_string_pretty(&r).unwrap_or_default())
                );
            } else {
                print_record(&r);
                print_request(
                    &r,
                    crate::verify::trust::Origin::of(&root.runs_dir(), &id, false).is_fetched(),
                );
            }
            Ok(0)
        }
        RunsCommand::Rm { runs } => {
            let mut failed = false;
            for given in runs {
                match root.resolve_run(&given).and_then(|id| root.remove_run(&id).map(|()| id)) {
                    Ok(id) => outln!("removed {id}"),
                    Err(e) => {
                        crate::error::print(&e);
                        failed = true;
                    }
                }
            }
            failed |= !collect(&root);
            Ok(if failed { crate::error::EXIT_EXPRUN_FAILED } else { 0 })
        }
        RunsCommand::Prune { older_than, keep_last, replays_only, dry_run, force } => {
            if older_than.is_none() && keep_last.is_none() && !replays_only {
                return Err(Error::Usage(
                    "runs prune: say which records to remove: --older-than, --keep-last or --replays-only"
                        .into(),
                ));
            }
            let records = read_all(&root);
            let p = select::Prune { older_than, keep_last, replays_only };
            let plan = select::plan_prune(&records, &root.runs_dir(), &p, force);
            let short = |id: &str| id.get(..12).unwrap_or(id).to_string();
            let needed_by = |deps: &[select::Dependent]| {
                deps.iter().map(|d| format!("{} ({})", short(&d.run), d.how)).collect::<Vec<_>>().join(", ")
            };
            for (id, deps) in &plan.kept {
                say!("kept {id}: needed by {}; remove those too, or use --force", needed_by(deps));
            }
            let mut failed = false;
            for (id, deps) in &plan.remove {
                let also = if deps.is_empty() {
                    String::new()
                } else {
                    format!(" (--force: needed by {})", needed_by(deps))
                };
                if dry_run {
                    say!("would remove {id}{also}");
                    continue;
                }
                match root.remove_run(id) {
                    Ok(()) => say!("removed {id}{also}"),
                    Err(e) => {
                        crate::error::print(&e);
                        failed = true;
                    }
                }
            }
            if !dry_run && !plan.remove.is_empty() {
                failed |= !collect(&root);
            }
            Ok(if failed { crate::error::EXIT_EXPRUN_FAILED } else { 0 })
        }
        RunsCommand::Diff { run_a, run_b, json, limit, tolerances: t } => {
            let tol =
                crate::verify::compare::Tolerances::parse(t.rtol.as_deref(), t.atol.as_deref(), &t.tolerance)
                    .map_err(|e| Error::Usage(e.to_string()))?;
            let (id_a, id_b) = (root.resolve_run(&run_a)?, root.resolve_run(&run_b)?);
            let (a, b) = (root.read_record(&id_a)?, root.read_record(&id_b)?);
            let artifact = |r: &RunRecord| {
                crate::verify::trust::Origin::of(&root.runs_dir(), &r.run_id, false).artifact()
            };
            let values = diff::output_values(
                &diff::Place { record: &a, artifact: artifact(&a) },
                &diff::Place { record: &b, artifact: artifact(&b) },
                &tol,
            );
            let mut d = diff::diff(a, b, limit.0)
                .map_err(|source| Error::Json { op: "comparing the records", source })?;
            d.add_values(values, limit.0);
            if json {
                outln!(
                    "{}",
                    crate::record::json_for_terminal(&serde_json::to_string_pretty(&d).unwrap_or_default())
                );
            } else {
                out!("{}", d.render());
            }
            Ok(if d.same() { 0 } else { 1 })
        }
        RunsCommand::Export { run, format, output, force } => {
            let id = root.resolve_run(&run)?;
            let r = root.read_record(&id)?;
            match (format, output) {
                (ExportFormat::RoCrate, Some(dir)) => {
                    let path = export::write_ro_crate(&r, &dir, force)?;
                    eprintln!("wrote {}", path.display());
                }
                (ExportFormat::RoCrate, None) => print_json(&export::ro_crate(&r, None)),
                (ExportFormat::InToto, output) => {
                    let path = root.runs_dir().join(&id).join("record.json");
                    let record_file = crate::digest::Digest::of_file(&path)
                        .ok()
                        .map(|(digest, _)| export::RecordFile { path, digest });
                    let statement = export::in_toto(&r, record_file.as_ref());
                    if statement["subject"].as_array().map(Vec::is_empty).unwrap_or(true) {
                        eprintln!(
                            "exprun: warning: run {id} has no output files and no stdout or stderr: the statement has no subjects"
                        );
                    }
                    match output {
                        Some(file) => {
                            export::write_new(&file, &export::to_pretty(&statement), force)?;
                            eprintln!("wrote {}", file.display());
                        }
                        None => print_json(&statement),
                    }
                }
            }
            Ok(0)
        }
    }
}

/// Every record in the root, those that cannot be read reported and left out.
fn read_all(root: &crate::state::Root) -> Vec<RunRecord> {
    let mut records = Vec::new();
    for id in root.run_ids() {
        match root.read_record(&id) {
            Ok(r) => records.push(r),
            Err(e) => crate::error::print(&e),
        }
    }
    records
}

/// After records were removed: the index without them, and the objects no
/// record names any more removed. Whether that worked (it is said if not).
fn collect(root: &crate::state::Root) -> bool {
    match index::collect(&root.runs_dir()) {
        Ok(_) => true,
        Err(e) => {
            crate::error::print(&Error::from(e));
            false
        }
    }
}

/// JSON from a record on stdout: C1 and bidirectional controls in strings
/// written as `\uXXXX` (the same JSON), since stdout may be a terminal.
pub(super) fn print_json(v: &serde_json::Value) {
    out!("{}", crate::record::json_for_terminal(&String::from_utf8_lossy(&export::to_pretty(v))));
}

/// `exprun gc`: clean up after runs whose exprun died, leftovers of
/// interrupted imports, and pod records past the node's retention policy.
pub fn gc(globals: &Globals) -> Result<i32> {
    let node = crate::node::NodeConfig::load()?;
    let root = globals.state();
    let cleaned = root.cleanup_stale();
    for id in &cleaned {
        outln!("cleaned up run {id} (recorded as lost)");
    }
    let removed = crate::record::retention::prune(
        &root.runs_dir(),
        &node.records.retention,
        std::time::SystemTime::now(),
    )?;
    for id in &removed {
        outln!("removed the record of pod container {id} (retention)");
    }
    crate::verify::check::remove_stale_scratch(&root);
    crate::build::remove_stale(&root);
    let store = crate::image::ImageStore::open(&root.store_dir())?;
    super::image::gc_store(globals, &store)?;
    Ok(0)
}

fn argv(r: &RunRecord) -> Vec<String> {
    r.spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default()
}

fn status_label(status: Status, oom_killed: bool) -> String {
    let s = super::runs_ls::status_name(status);
    if oom_killed {
        format!("{s},oom")
    } else {
        s.to_string()
    }
}

/// What a replay of `r` runs: its request (not its spec), what that asks for
/// beyond the default profile, and where spec and request disagree.
fn print_request(r: &RunRecord, fetched: bool) {
    use crate::verify::{replay::Permit, summary, trust};
    let Some(o) = &r.request else { return };
    if fetched {
        say!("origin:     fetched from a registry: the record is what its pusher claims; its files are the artifact's");
    }
    say!("request:    what `exprun replay` runs:");
    for (label, value) in summary::request_lines(o, r.determinism.as_ref(), &[]) {
        say!("  {label:<12}{value}");
    }
    // The replay provides the inputs and outputs itself; the rest is the request's.
    let provided: Vec<PathBuf> = o.inputs.iter().chain(&o.outputs).map(|m| m.source.clone()).collect();
    let ctx = trust::AuditContext { host_rlimits: &crate::spec::caller_rlimits(), provided: &provided };
    let permit = if fetched { Permit::Refused } else { Permit::Recorded };
    let findings: Vec<_> = trust::audit(o, &ctx).into_iter().map(|f| (f, permit)).collect();
    out!("{}", summary::render_findings(&findings));
    out!("{}", summary::render_disagreements(r));
}

fn print_record(r: &RunRecord) {
    let p = r.spec.process().clone().unwrap_or_default();
    say!("run:        {}{}", r.run_id, r.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default());
    say!(
        "status:     {} (exit {}){}",
        status_label(r.status, r.exit.oom_killed),
        r.exit.code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
        r.exit.signal.as_ref().map(|s| format!(", {s}")).unwrap_or_default()
    );
    if let Some(m) = &r.exit.message {
        say!("message:    {m}");
    }
    if let Some(k) = &r.kubernetes {
        let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
        say!(
            "pod:        {}/{} container {} ({}), sandbox {}",
            or_dash(&k.namespace),
            or_dash(&k.pod),
            or_dash(&k.container),
            or_dash(&k.container_type),
            k.sandbox_id
        );
    }
    if let Some(i) = &r.image {
        say!("image:      {} {}", i.reference, i.manifest_digest);
    }
    if let Some(of) = &r.replay_of {
        let under = r.variation.as_ref().map(|v| format!(" under {v}")).unwrap_or_default();
        let by = match (r.made_by, r.made_by_verify()) {
            (_, true) => " by exprun verify",
            (Some(crate::record::MadeBy::Replay), _) => " by exprun replay",
            _ => "",
        };
        say!("replay of:  {of}{by}{under}");
    }
    for d in &r.drift {
        say!("drift:      {}: {} -> {}", d.item, d.recorded, d.now);
    }
    say!("command:    {}", argv(r).join(" "));
    for e in p.env().iter().flatten() {
        say!("env:        {e}");
    }
    if let Some(exe) = &r.executable {
        say!("executable: {exe}");
    }
    say!("cwd:        {}", p.cwd().display());
    say!("user:       uid={} gid={}", p.user().uid(), p.user().gid());
    say!("hostname:   {}", r.spec.hostname().as_deref().unwrap_or("-"));
    say!("created:    {}", r.time.created);
    if let (Some(s), Some(e), Some(w)) = (&r.time.started, &r.time.ended, r.time.wall_seconds) {
        say!("ran:        {s} .. {e} ({w:.3} s)");
    }
    let u = &r.usage.cgroup;
    let secs = |us: Option<u64>| us.map(|v| format!("{:.3} s", v as f64 / 1e6)).unwrap_or_else(|| "-".into());
    if let Some(why) = &r.usage.unavailable {
        say!("usage:      unavailable: {why}");
    } else {
        say!(
            "usage:      cpu user {} system {}, peak memory {}, oom kills {}",
            secs(u.cpu_user_us),
            secs(u.cpu_system_us),
            u.peak_memory_bytes
                .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                .unwrap_or_else(|| "-".into()),
            u.oom_kills
        );
    }
    let l = &r.cgroup.limits;
    say!(
        "limits:     memory {}, cpu quota {}, pids {}",
        l.memory_bytes.map(|b| format!("{} MiB", b >> 20)).unwrap_or_else(|| "none".into()),
        l.cpu_quota_us
            .map(|q| format!("{:.2} CPUs", q as f64 / crate::cgroups::CPU_PERIOD_US as f64))
            .unwrap_or_else(|| "none".into()),
        l.pids_max.map(|p| p.to_string()).unwrap_or_else(|| "none".into())
    );
    for (label, s) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        if let Some(s) = s {
            say!("{label}:     {} bytes, {}", s.bytes, s.digest);
        }
    }
    for (label, list) in [("input", &r.inputs), ("output", &r.outputs)] {
        for d in list {
            let t = d.tree.as_ref().map(|t| {
                let mut s = format!("{} ({} files, {} bytes)", t.digest, t.files, t.bytes);
                if let Some(why) = &t.incomplete {
                    s.push_str(&format!("; INCOMPLETE: {why}"));
                }
                if !t.cleaned.is_empty() {
                    s.push_str(&format!("; {} file(s) cleaned after the run", t.cleaned.len()));
                }
                s
            });
            say!(
                "{label}:     {} -> {}: {}",
                d.source.display(),
                d.destination.display(),
                t.or(d.error.clone()).unwrap_or_default()
            );
        }
    }
    if let Some(d) = &r.determinism {
        let pins: Vec<String> = d
            .pins
            .iter()
            .map(|p| if p.value.contains('=') { p.value.clone() } else { format!("{}={}", p.name, p.value) })
            .collect();
        say!("pinned:     {}", pins.join("; "));
        let free: Vec<&str> = d.unpinned.iter().map(|u| u.source.as_str()).collect();
        say!("unpinned:   {}", free.join(", "));
    }
    say!(
        "host:       {} {} {}, {} CPUs, cgroup {}",
        r.host.arch,
        r.host.kernel_release,
        r.host.cpu_model.as_deref().unwrap_or("?"),
        r.host.cpus_online,
        r.host.cgroup_mode
    );
    for g in &r.gpus {
        say!("gpu:        {} {}", g.path.display(), crate::record::gpu::summary(g));
        for n in &g.notes {
            say!("gpu note:   {n}");
        }
    }
    say!(
        "exprun:     {} {}",
        r.exprun.version,
        r.exprun.binary_digest.as_ref().map(|d| d.to_string()).unwrap_or_default()
    );
}
