//! `exprun replay` and `exprun verify`.

use std::path::PathBuf;

use clap::Args;

use super::Globals;
use crate::error::Result;
use crate::image::ImageStore;
use crate::run::Replay;
use crate::spec::options::HostMount;
use crate::verify::trust::{self, Origin};
use crate::verify::{replay, summary};

/// How numbers in JSON and CSV/TSV outputs are compared: `verify` and `runs diff`.
#[derive(Args, Debug, Clone, Default)]
pub struct ToleranceArgs {
    /// Tolerance for numbers in one output file: FILE[:JSONPATH]=TOL, e.g.
    /// metrics.json:$.accuracy=1e-6
    #[arg(long, value_name = "RULE", action = clap::ArgAction::Append)]
    pub tolerance: Vec<String>,
    /// Relative tolerance for every number in JSON and CSV/TSV outputs
    #[arg(long, value_name = "X")]
    pub rtol: Option<String>,
    /// Absolute tolerance for every number in JSON and CSV/TSV outputs
    #[arg(long, value_name = "X")]
    pub atol: Option<String>,
}

/// The options of `exprun replay`.
#[derive(Debug, Args)]
#[command(after_help = "The replay uses the recorded image and inputs by digest, the recorded argv, \
    environment, limits, mounts and pins. It first prints the request that will run (from the record's \
    request, which is what runs), with everything it asks for beyond the default profile, and what \
    differs from the original run (drift); a different image, input or secret refuses the replay \
    unless --allow-drift. Secret variables are recorded as keyed digests: export them again before \
    replaying; a secret recorded under another state root's key cannot be compared, and the drift \
    table says so.\n\n\
    A run fetched from a registry (oci://REF, or a run fetched so earlier) is replayed only as far as \
    its artifact proves: its inputs come from the artifact and must match the record's digests \
    (--allow-drift does not change that), host paths in its request are refused, and every host \
    mount, device, added capability, seccomp change, host network, kept set-id file or device node, \
    raised rlimit or secret taken from your environment is refused unless named with --allow.\n\n\
    Exit status: the command's own, as for exprun run; 125 when the replay cannot be made or is refused.")]
pub struct ReplayArgs {
    /// Run name, id or id prefix, or oci://REF for a run pushed with `exprun push --run`
    #[arg(value_name = "RUN")]
    run: String,
    /// Replay even when the image, an input or a secret differs from the record
    #[arg(long = "allow-drift")]
    allow_drift: bool,
    /// Write the outputs under DIR (an output at /out goes to DIR/out)
    /// [default: the replay's record directory, RUNS/<id>/outputs]
    #[arg(long = "output-root", value_name = "DIR")]
    output_root: Option<PathBuf>,
    /// Print the request that would run and the drift table, and stop (exit 125
    /// when the replay would be refused)
    #[arg(long = "dry-run")]
    dry_run: bool,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    registry: super::registry::RegistryArgs,
}

/// What a replay of a fetched run may have, and inputs given again.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Permit one thing a run fetched from a registry asks for beyond the default
    /// profile (repeatable): cap:NAME, network:host, ipc:host, seccomp:unconfined,
    /// seccomp:sha256:HEX, mount:PATH, mount:PATH:rw, device:PATH, cdi:NAME, env:NAME,
    /// tmpfs:DST:dev, tmpfs:DST:suid, output:DST:suid, output:DST:dev, ulimit:NAME
    #[arg(long, value_name = "WHAT", action = clap::ArgAction::Append)]
    allow: Vec<String>,
    /// Read the input mounted at DST from the host path SRC instead (an input the
    /// artifact does not carry, or data that moved); its digest is checked against
    /// the record
    #[arg(long = "input", value_name = "SRC:DST", action = clap::ArgAction::Append)]
    input: Vec<String>,
}

impl TrustArgs {
    /// The `--allow` names, normalised, and the `--input`s, checked.
    fn parse(&self) -> Result<(Vec<String>, Vec<HostMount>)> {
        let allow = self.allow.iter().map(|a| trust::parse_allow(a)).collect::<Result<Vec<_>, _>>()?;
        let cwd = std::env::current_dir().map_err(|source| crate::error::Error::Io {
            op: "cannot read the current directory".into(),
            source,
        })?;
        let mut inputs = Vec::new();
        for s in &self.input {
            let m = crate::spec::options::parse_host_mount("--input", s, &cwd, false)?;
            if !m.source.exists() {
                return Err(crate::spec::Error::Option {
                    option: "--input",
                    value: s.clone(),
                    why: "the host path does not exist".into(),
                }
                .into());
            }
            inputs.push(m);
        }
        Ok((allow, inputs))
    }
}

/// Run `exprun replay`.
pub fn replay(globals: &Globals, a: ReplayArgs) -> Result<i32> {
    let root = globals.state();
    let store = ImageStore::open(&root.store_dir())?;
    let (allow, inputs) = a.trust.parse()?;
    let (original, origin) = load(&root, &store, Some(&a.run), &a.registry)?;
    drop(store);
    let id = crate::fsutil::random_hex(16);
    let output_root = match &a.output_root {
        Some(d) => super::oci::absolute(d.clone())?,
        None => root.runs_dir().join(&id).join("outputs"),
    };
    let here = replay::Here::detect(&root)?;
    let caller = |n: &str| std::env::var(n).ok();
    let ctx = here.context(&caller, &origin, &allow, &inputs);
    let prepared = replay::prepare(&ctx, &original, &output_root)?;
    eprint!("{}", summary::render("replay", &original, &prepared));
    prepared.check(a.allow_drift)?;
    eprint!("{}", replay::render_drift(&prepared.drift));
    if a.dry_run {
        return Ok(0);
    }
    let options = prepared.options;
    let result = crate::run::run_with(
        &root,
        &options,
        std::env::args().collect(),
        Replay {
            id: Some(id.clone()),
            of: Some(original.run_id.clone()),
            made_by: Some(crate::record::MadeBy::Replay),
            pins: original.determinism.as_ref(),
            inputs: Some(prepared.inputs),
            drift: prepared.drift,
            ..Replay::default()
        },
    );
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            // Nothing of a replay that never ran is kept.
            if a.output_root.is_none() && !root.runs_dir().join(&id).join("record.json").exists() {
                let _ = std::fs::remove_dir_all(root.runs_dir().join(&id));
            }
            return Err(e);
        }
    };
    if let Some(note) = &result.note {
        eprintln!("exprun: {note} (run {})", &id[..12]);
    }
    let outputs = if options.outputs.is_empty() {
        String::new()
    } else {
        format!("; outputs under {}", output_root.display())
    };
    eprintln!("exprun: replay of {} recorded as {}{outputs}", &original.run_id[..12], &id[..12]);
    Ok(result.exit_code)
}

/// The record of `run` (a name, id or prefix, `oci://REF`, or the latest run
/// when `None`), and where it comes from.
fn load(
    root: &crate::state::Root,
    store: &ImageStore,
    run: Option<&str>,
    registry: &super::registry::RegistryArgs,
) -> Result<(crate::record::RunRecord, Origin)> {
    let (record, via_registry) = match run.map(|r| (r, r.strip_prefix("oci://"))) {
        Some((_, Some(reference))) => (fetch(root, store, reference, registry)?, true),
        given => {
            let id = match given {
                Some((r, _)) => root.resolve_run(r)?,
                None => root.latest_run()?,
            };
            let mut record = root.read_record(&id)?;
            crate::registry::artifact::localise(&mut record, &root.runs_dir());
            (record, false)
        }
    };
    let origin = Origin::of(&root.runs_dir(), &record.run_id, via_registry);
    Ok((record, origin))
}

/// Fetch a run pushed with `exprun push --run` (record, files, image).
fn fetch(
    root: &crate::state::Root,
    store: &ImageStore,
    reference: &str,
    registry: &super::registry::RegistryArgs,
) -> Result<crate::record::RunRecord> {
    let r = crate::registry::parse_ref(reference)?;
    let record = crate::registry::artifact::fetch_run(root, store, &r, &registry.options())?;
    // A tag may point at another run tomorrow (or in a second): what was
    // reviewed with --dry-run is replayed again by its id, which names this
    // record and nothing else.
    let id = &record.run_id[..12];
    eprintln!(
        "exprun: fetched run {id} from {}; it is kept here: `exprun replay {id}` or `exprun verify {id}` \
         uses this same run without fetching again",
        crate::record::for_terminal(&r.to_string())
    );
    Ok(record)
}

/// The options of `exprun verify`.
#[derive(Debug, Args)]
#[command(after_help = "Each replay runs as `exprun replay` would (and is recorded, with replay_of); \
    its exit status, stdout, stderr and output files are compared with the original's: bit-exact \
    first, then, for JSON and CSV/TSV files, number by number within the declared tolerances. \
    Whatever differs on a plain replay depends on the wall clock, randomness or scheduling. \
    With --vary, the run is replayed under the variations, and when the result changes, the \
    variations are bisected to name the one (or the combination) responsible.\n\n\
    Content first: an output whose bytes are the same and whose permission bits differ is reported \
    apart and is a difference only with --compare modes.\n\n\
    Variations: hostname, user (another user of the image's /etc/passwd), tz, locale (another locale \
    the image has), umask, cpus (other CPUs; nproc, sched_getaffinity, /sys/devices/system/cpu/online \
    and /proc/cpuinfo show them), aslr, env-order, dirent-order (input directories listed in another \
    order), or all. Each is reported as changing the result, not changing it, or not tested (and why); \
    they are judged on what a plain replay reproduces.\n\n\
    Settings kept with the experiment: --config FILE, else exprun-verify.toml in the current directory, \
    else at the root of the run's first input directory that has one (not for a run fetched from a \
    registry). Its keys: runs = N, vary = [..], \
    ignore = [..], compare = [\"modes\"], rtol = X, atol = X, tolerance = [..]; the command line adds \
    to its lists and replaces its values. The verdict records the settings and the file's digest.\n\n\
    Before the first replay, verify prints the request the replays run, as `exprun replay` does, and \
    a run fetched from a registry is held to the same checks: its inputs from the artifact, \
    digest-checked; host paths refused; each privilege beyond the default profile only with --allow.\n\n\
    Exit status: 0 reproduced, 1 differs, 125 could not check.\n\n\
    Examples:\n  exprun verify --latest\n  \
    exprun verify train-42 --tolerance 'metrics.json:$.accuracy=1e-6' --json > verdict.json\n  \
    exprun verify train-42 --vary all")]
pub struct VerifyArgs {
    /// Run name, id or id prefix, or oci://REF for a run pushed with `exprun push --run`
    #[arg(value_name = "RUN", required_unless_present = "latest", conflicts_with = "latest")]
    run: Option<String>,
    /// Verify the most recently recorded run
    #[arg(short = 'l', long)]
    latest: bool,
    /// Number of plain replays [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: Option<u32>,
    /// Replay under these variations too (comma-separated, or all)
    #[arg(long, value_name = "LIST", action = clap::ArgAction::Append)]
    vary: Vec<String>,
    #[command(flatten)]
    tolerances: ToleranceArgs,
    /// Leave out of the comparison: stdout, stderr, or output files matching
    /// GLOB (relative to the output, or absolute under its mount point)
    #[arg(long, value_name = "stdout|stderr|GLOB", action = clap::ArgAction::Append)]
    ignore: Vec<String>,
    /// Compare more than content: modes (permission bits of output files)
    #[arg(long, value_name = "WHAT", value_parser = ["modes"], action = clap::ArgAction::Append)]
    compare: Vec<String>,
    /// Read the settings from FILE [default: exprun-verify.toml in the current
    /// directory, else at the root of the run's first input that has one]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Verify even when the image, an input or a secret differs from the record
    #[arg(long = "allow-drift")]
    allow_drift: bool,
    /// Keep the replays' outputs under DIR (DIR/1, DIR/2, ...) instead of removing them
    #[arg(long = "keep-outputs", value_name = "DIR")]
    keep_outputs: Option<PathBuf>,
    /// Print the request the replays would run and the drift table, and stop (exit
    /// 125 when they would be refused)
    #[arg(long = "dry-run")]
    dry_run: bool,
    #[command(flatten)]
    trust: TrustArgs,
    /// Print the verdict as JSON (schema exprun.dev/verify/v1)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: super::registry::RegistryArgs,
}

/// Run `exprun verify`.
pub fn verify(globals: &Globals, a: VerifyArgs) -> Result<i32> {
    use crate::verify::check;
    let root = globals.state();
    let (allow, inputs) = a.trust.parse()?;
    let store = ImageStore::open(&root.store_dir())?;
    let (original, origin) = load(&root, &store, a.run.as_deref(), &a.registry)?;
    drop(store);
    let cwd = std::env::current_dir().map_err(|source| crate::error::Error::Io {
        op: "cannot read the current directory".into(),
        source,
    })?;
    // A fetched record's host paths are someone else's claim: not looked in.
    let record_inputs: Vec<(PathBuf, PathBuf)> = match origin {
        Origin::Local => original.inputs.iter().map(|i| (i.source.clone(), i.destination.clone())).collect(),
        Origin::Fetched { .. } => Vec::new(),
    };
    let config = a.config.map(super::oci::absolute).transpose()?;
    let found = crate::verify::config::find(config.as_deref(), &cwd, &record_inputs);
    let given = crate::verify::config::Given {
        runs: a.runs,
        vary: a.vary,
        ignore: a.ignore,
        compare: a.compare,
        rtol: a.tolerances.rtol,
        atol: a.tolerances.atol,
        tolerance: a.tolerances.tolerance,
    };
    let settings = crate::verify::config::settings(found, given)?;
    let options = check::VerifyOptions {
        runs: settings.runs,
        vary: crate::verify::vary::Variation::parse_list(&settings.vary)?,
        tolerances: crate::verify::compare::Tolerances::parse(
            settings.rtol.as_deref(),
            settings.atol.as_deref(),
            &settings.tolerance,
        )
        .map_err(crate::verify::Error::from)?,
        ignore: crate::verify::compare::Ignore::parse(&settings.ignore)
            .map_err(crate::verify::Error::from)?,
        settings,
        allow_drift: a.allow_drift,
        keep_outputs: a.keep_outputs.map(super::oci::absolute).transpose()?,
        origin,
        allow,
        inputs,
    };
    let planned = check::plan(&root, &original, &options)?;
    eprint!("{}", summary::render("verify", &original, planned.first()));
    if a.dry_run {
        planned.first().check(a.allow_drift)?;
        eprint!("{}", replay::render_drift(&planned.first().drift));
        return Ok(0);
    }
    let verdict = planned.run()?;
    if a.json {
        // The verdict names the record's files and quotes their content.
        let json = serde_json::to_string_pretty(&verdict).unwrap_or_default();
        println!("{}", crate::record::json_for_terminal(&json));
    } else {
        print!("{}", crate::record::lines_for_terminal(&crate::verify::render::render(&verdict)));
    }
    Ok(if verdict.reproduced() { 0 } else { 1 })
}
