#!/usr/bin/env python3
"""Timing driver for scripts/bench.sh (python3 standard library only).

Runs several container runtimes against each other, one container per run,
in rounds whose order rotates (A B C, B C A, C A B, ...), in the modes that
--modes names (default warm,cold), in one invocation:

  warm      back-to-back runs (after a few unrecorded warm-up rounds)
  cold      time.sleep(SLEEP) before every run (the idle period that makes the
            next v1 cgroup attach block; see docs/research/performance-anchors.md)
  burst     --burst-size back-to-back runs of one runtime, timed as one block
            (the first spawn to the last wait4), --burst-reps times per
            runtime, the order of the runtimes rotating each repetition; the
            --cmd commands
  exec      the --exec-cmd commands (an exec of a short process into a
            container bench.sh started), in rotating rounds as warm
  rootless  the --rootless-cmd commands (one run each, some as another user:
            --as), in rotating rounds as warm

Each run is started with os.posix_spawn and reaped with os.wait4, timed
with time.perf_counter_ns() around spawn..wait4. From wait4's rusage it
keeps user+sys CPU time and ru_maxrss. stdin and stdout go to /dev/null,
stderr to a temp file that is shown only when a run fails. Any run that
does not exit 0 aborts the benchmark (exit status 1).

Peak RSS. ru_maxrss of a waited-for child is the largest single process
among the child and the descendants it reaped, but the kernel also counts
the memory the child had *before* its exec (exec_mmap records the old mm's
high-water mark), and a child spawned by Python starts as a copy of (or,
with posix_spawn's vfork, shares) the Python process: ru_maxrss of every
directly spawned run is therefore at least the driver's own RSS (8-15 MiB),
which hides runtimes smaller than that (crun is about 3 MiB). So, after
the timed rounds of each mode, the driver makes --rss-runs extra rounds in
which each run goes through a small C wrapper (--rss-wrapper, GNU time:
`time -f %M`), which forks and waits for the runtime itself and reports
that wait4's ru_maxrss; the table's peak RSS is the maximum of those. The
wrapper's own floor (a fork+exec of /bin/true through it) is printed. The
raw wait4 values of the timed runs are kept in the JSON output.

Usage (bench.sh builds this command line):
  bench_driver.py --runs N [--warmup W] [--sleep S] [--ref NAME[,NAME...]]
                  [--modes LIST] [--burst-size N] [--burst-reps R]
                  [--rss-wrapper /usr/bin/time] [--rss-runs K]
                  [--json FILE] [--meta KEY=VALUE]...
                  [--cmd NAME 'ARGV...']...
                  [--exec-cmd NAME 'ARGV...']... [--exec-ref NAME[,NAME...]]
                  [--rootless-cmd NAME 'ARGV...']... [--rootless-ref NAME[,...]]
                  [--as NAME UID:GID]... [--env-for NAME KEY=VALUE]...
                  [--pair MODE A/B]... [--target MODE:A/B:wall|cpu|rss<=LIMIT]...

ARGV is split with shlex; every "{id}" in it is replaced by a container id
unique to the run (ID_PREFIX-NAME-MODE-ROUND). The first argument must be
an absolute path or a name found on PATH. --ref names the runtimes whose
ratios against every other (non-reference) runtime are reported (default:
the first); --exec-ref and --rootless-ref the same for those modes. --pair
adds one more ratio to a mode's table. --target prints whether a paired
median ratio (or, for rss, the ratio of peak RSS) is at most LIMIT.

--as NAME UID:GID runs the rootless command NAME as that user: the driver
(root) sets its real uid and gid to UID and GID and empties its supplementary
groups around the spawn only, and posix_spawn's RESETIDS makes the child's
effective ids the real ones before it execs, so the command starts with
uid/gid UID/GID everywhere and no capabilities, as from a login shell, and
is timed the same way as the others (no setpriv or sudo in between).
--env-for NAME KEY=VALUE gives the rootless command NAME exactly the
environment its --env-for options list (instead of the driver's).
"""

import argparse
import gc
import json
import os
import select
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time

MODES = ("warm", "cold", "burst", "exec", "rootless")
ROUND_MODES = ("warm", "cold")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=40, help="recorded rounds per mode")
    p.add_argument("--warmup", type=int, default=3,
                   help="unrecorded back-to-back rounds before the warm mode")
    p.add_argument("--sleep", type=float, default=0.3,
                   help="idle seconds before each cold run")
    p.add_argument("--id-prefix", default="exbench-%d" % os.getpid())
    p.add_argument("--ref", default=None,
                   help="comma-separated names to give ratios for against every other name")
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--cmd", nargs=2, action="append", default=[],
                   metavar=("NAME", "ARGV"))
    p.add_argument("--modes", default="warm,cold",
                   help="comma-separated subset of %s" % ",".join(MODES))
    p.add_argument("--burst-size", type=int, default=100,
                   help="back-to-back runs per burst")
    p.add_argument("--burst-reps", type=int, default=5,
                   help="bursts per runtime")
    p.add_argument("--exec-cmd", nargs=2, action="append", default=[],
                   metavar=("NAME", "ARGV"))
    p.add_argument("--exec-ref", default=None)
    p.add_argument("--rootless-cmd", nargs=2, action="append", default=[],
                   metavar=("NAME", "ARGV"))
    p.add_argument("--rootless-ref", default=None)
    p.add_argument("--as", dest="as_user", nargs=2, action="append", default=[],
                   metavar=("NAME", "UID:GID"))
    p.add_argument("--env-for", nargs=2, action="append", default=[],
                   metavar=("NAME", "KEY=VALUE"))
    p.add_argument("--pair", nargs=2, action="append", default=[], metavar=("MODE", "A/B"),
                   help="one more paired ratio to report in MODE, between two of its names")
    p.add_argument("--target", action="append", default=[], metavar="MODE:A/B:METRIC<=LIMIT",
                   help="a target to check: METRIC wall or cpu (paired median) or rss; "
                        "left out where that mode or ratio was not measured")
    p.add_argument("--rss-wrapper", default=None,
                   help="GNU time, to measure peak RSS without the driver's own RSS")
    p.add_argument("--rss-runs", type=int, default=5,
                   help="rounds per mode through --rss-wrapper")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds before a run that has not exited is killed (abort)")
    p.add_argument("--scratch", default=None,
                   help="directory for the driver's temp files (default: $TMPDIR or /tmp)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    a = p.parse_args(argv)
    if a.runs < 1:
        p.error("--runs must be at least 1")
    if a.burst_size < 1 or a.burst_reps < 1:
        p.error("--burst-size and --burst-reps must be at least 1")
    a.modes = [m for m in a.modes.split(",") if m]
    for m in a.modes:
        if m not in MODES:
            p.error("unknown mode %r in --modes (known: %s)" % (m, ",".join(MODES)))
    if not a.modes:
        p.error("--modes is empty")
    need = {"--cmd": ("warm", "cold", "burst"), "--exec-cmd": ("exec",),
            "--rootless-cmd": ("rootless",)}
    a.refs = _refs(p, a.cmd, a.ref, "--cmd")
    a.exec_refs = _refs(p, a.exec_cmd, a.exec_ref, "--exec-cmd")
    a.rootless_refs = _refs(p, a.rootless_cmd, a.rootless_ref, "--rootless-cmd")
    for opt, modes in need.items():
        given = getattr(a, opt[2:].replace("-", "_"))
        for m in modes:
            if m in a.modes and not given:
                p.error("mode %s needs %s" % (m, opt))
    rootless_names = [n for n, _ in a.rootless_cmd]
    a.users = {}
    for name, ids in a.as_user:
        if name not in rootless_names:
            p.error("--as %s is not one of the --rootless-cmd names" % name)
        uid, sep, gid = ids.partition(":")
        if not sep or not uid.isdigit() or not gid.isdigit():
            p.error("--as wants UID:GID, got %r" % ids)
        a.users[name] = (int(uid), int(gid))
    a.envs = {}
    for name, kv in a.env_for:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            p.error("--env-for wants NAME KEY=VALUE, got %r" % kv)
        if name not in rootless_names:
            p.error("--env-for %s is not one of the --rootless-cmd names" % name)
        a.envs.setdefault(name, {})[k] = v
    return a


def _refs(p, cmds, ref, opt):
    names = [n for n, _ in cmds]
    if len(set(names)) != len(names):
        p.error("duplicate %s name" % opt)
    if not names:
        return []
    refs = ref.split(",") if ref else [names[0]]
    for r in refs:
        if r not in names:
            p.error("the reference %s is not one of the %s names" % (r, opt))
    return refs


class RunFailed(Exception):
    pass


class Runner:
    def __init__(self, cmds, id_prefix, timeout_s, scratch=None, users=None, envs=None):
        self.users = users or {}
        self.envs = envs or {}
        self.timeout_ms = int(timeout_s * 1000)
        self.cmds = {}
        for name, line in cmds:
            argv = shlex.split(line)
            if not argv:
                raise SystemExit("bench_driver: empty command for %s" % name)
            exe = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0])
            if not exe:
                raise SystemExit("bench_driver: %s: %s not found" % (name, argv[0]))
            argv[0] = exe
            self.cmds[name] = argv
        self.id_prefix = id_prefix
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        fd, self.errpath = tempfile.mkstemp(prefix="bench-stderr.", dir=scratch)
        os.close(fd)
        self.env = dict(os.environ)

    def close(self):
        os.close(self.devnull)
        for p in (self.errpath, self.errpath + ".rss"):
            try:
                os.unlink(p)
            except OSError:
                pass

    def floor_rss(self, wrapper):
        """ru_maxrss of /bin/true run through the wrapper (its floor)."""
        return self._run_wrapped("floor", ["/bin/true"], wrapper)[2]

    def argv_for(self, name, cid):
        return [a.replace("{id}", cid) for a in self.cmds[name]]

    def run(self, name, cid, rss_wrapper=None):
        """Run one container; return (wall_ns, cpu_ns, maxrss_kib).

        With rss_wrapper (GNU time), the run goes through it and maxrss_kib
        is the one it reports for the runtime (wall and cpu then include
        the wrapper and are not used)."""
        argv = self.argv_for(name, cid)
        if rss_wrapper:
            return self._run_wrapped(name, argv, rss_wrapper)
        return self._run(name, argv)

    def _run_wrapped(self, name, argv, wrapper):
        if name in self.users:
            # A command run as another user could not create the wrapper's
            # output file in the scratch directory: the wrapper writes to
            # its stderr (the run's stderr file, open already), last line.
            wall, cpu, _ = self._run(name, [wrapper, "-f", "%M", "--"] + argv)
            rss_file = self.errpath
        else:
            rss_file = self.errpath + ".rss"
            wall, cpu, _ = self._run(name, [wrapper, "-f", "%M", "-o", rss_file, "--"] + argv)
        with open(rss_file) as f:
            last = f.read().strip().splitlines()[-1]
        return wall, cpu, int(last)

    # Signals Python ignores (SIGPIPE, SIGXFSZ) or that a background job
    # inherits as ignored (SIGINT, SIGQUIT) are reset in the child, and its
    # signal mask is emptied, as a shell would do for a normal command.
    SIGDEF = tuple(getattr(signal, n) for n in
                   ("SIGPIPE", "SIGXFSZ", "SIGINT", "SIGQUIT", "SIGTERM", "SIGHUP"))

    def _spawn_as(self, user, argv, env, actions):
        """posix_spawn as uid:gid with no supplementary groups (see --as).

        The driver keeps its effective (root) ids and only lends its real
        ones; RESETIDS makes them the child's effective ids before exec."""
        uid, gid = user
        groups = os.getgroups()
        ruid, rgid = os.getuid(), os.getgid()
        os.setgroups([])
        try:
            os.setresgid(gid, -1, -1)
            try:
                os.setresuid(uid, -1, -1)
                try:
                    return os.posix_spawn(argv[0], argv, env, file_actions=actions,
                                          setsigdef=self.SIGDEF, setsigmask=(),
                                          resetids=True)
                finally:
                    os.setresuid(ruid, -1, -1)
            finally:
                os.setresgid(rgid, -1, -1)
        finally:
            os.setgroups(groups)

    def _run(self, name, argv):
        errfd = os.open(self.errpath, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        actions = [
            (os.POSIX_SPAWN_DUP2, self.devnull, 0),
            (os.POSIX_SPAWN_DUP2, self.devnull, 1),
            (os.POSIX_SPAWN_DUP2, errfd, 2),
        ]
        timed_out = False
        try:
            env = self.envs.get(name, self.env)
            user = self.users.get(name)
            t0 = time.perf_counter_ns()
            if user:
                pid = self._spawn_as(user, argv, env, actions)
            else:
                pid = os.posix_spawn(argv[0], argv, env, file_actions=actions,
                                     setsigdef=self.SIGDEF, setsigmask=())
            pidfd = os.pidfd_open(pid)
            try:
                # A guard against a runtime that never returns (pidfd + poll,
                # then SIGKILL); the exited child is reaped with wait4.
                p = select.poll()
                p.register(pidfd, select.POLLIN)
                if not p.poll(self.timeout_ms):
                    timed_out = True
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                _, status, ru = os.wait4(pid, 0)
                t1 = time.perf_counter_ns()
            except BaseException:
                # Interrupted (SIGINT/SIGTERM): give the runtime a moment to
                # finish, then kill it, and reap it, so that bench.sh's
                # cleanup does not race a live runtime.
                try:
                    if not _wait_pidfd(pidfd, 5000):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    os.wait4(pid, 0)
                except (OSError, KeyboardInterrupt, Interrupted):
                    pass
                raise
            finally:
                os.close(pidfd)
        finally:
            os.close(errfd)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or timed_out:
            with open(self.errpath, "r", errors="replace") as f:
                err = f.read()
            if timed_out:
                how = "no exit after %d s, killed" % (self.timeout_ms // 1000)
            elif code > 0:
                how = "exit status %d" % code
            else:
                how = "killed by signal %d" % -code
            raise RunFailed("%s failed (%s)\ncommand: %s\nstderr:\n%s" % (
                name, how, shlex.join(argv), err.rstrip("\n") or "(empty)"))
        cpu_ns = int((ru.ru_utime + ru.ru_stime) * 1e9)
        return t1 - t0, cpu_ns, ru.ru_maxrss


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def _wait_pidfd(pidfd, timeout_ms):
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(timeout_ms))


def rotation(names, i):
    k = i % len(names)
    return names[k:] + names[:k]


def run_mode(runner, names, mode, rounds, sleep_s, progress, tag=None, rss_wrapper=None):
    tag = tag or mode
    samples = {n: {"wall_ns": [], "cpu_ns": [], "maxrss_kib": []} for n in names}
    orders = []
    for i in range(rounds):
        order = rotation(names, i)
        orders.append(order)
        for name in order:
            if sleep_s:
                time.sleep(sleep_s)
            cid = "%s-%s-%s-%d" % (runner.id_prefix, name, tag, i + 1)
            wall, cpu, rss = runner.run(name, cid, rss_wrapper)
            s = samples[name]
            s["wall_ns"].append(wall)
            s["cpu_ns"].append(cpu)
            s["maxrss_kib"].append(rss)
        if progress:
            sys.stderr.write("\r  %-6s round %d/%d" % (tag, i + 1, rounds))
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    return samples, orders


def deciles(xs):
    """(p10, p90) with linear interpolation between order statistics."""
    if len(xs) == 1:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return q[0], q[8]


def summarize(samples, names, refs, rss_samples=None, pairs=()):
    out = {"runtimes": {}, "ratios": {}}
    for n in names:
        wall = [x / 1e6 for x in samples[n]["wall_ns"]]
        cpu = [x / 1e6 for x in samples[n]["cpu_ns"]]
        p10, p90 = deciles(wall)
        out["runtimes"][n] = {
            "n": len(wall),
            "median_ms": statistics.median(wall),
            "p10_ms": p10,
            "p90_ms": p90,
            "mean_ms": statistics.fmean(wall),
            "min_ms": min(wall),
            "max_ms": max(wall),
            "cpu_median_ms": statistics.median(cpu),
            "peak_rss_mib": max(samples[n]["maxrss_kib"]) / 1024.0,
            "peak_rss_source": "wait4 of the timed runs (includes the driver's own RSS)",
            "wall_ms": wall,
            "cpu_ms": cpu,
            "maxrss_kib_wait4": samples[n]["maxrss_kib"],
        }
        if rss_samples:
            out["runtimes"][n]["peak_rss_mib"] = max(rss_samples[n]["maxrss_kib"]) / 1024.0
            out["runtimes"][n]["peak_rss_source"] = "rss rounds through the wrapper"
            out["runtimes"][n]["maxrss_kib_wrapper"] = rss_samples[n]["maxrss_kib"]
    r = out["runtimes"]
    for ref, other in [(ref, o) for ref in refs for o in names if o not in refs] + list(pairs):
        paired = [a / b for a, b in zip(samples[ref]["wall_ns"], samples[other]["wall_ns"])]
        paired_cpu = [a / b for a, b in zip(samples[ref]["cpu_ns"], samples[other]["cpu_ns"]) if b > 0]
        p10, p90 = deciles(paired)
        out["ratios"]["%s/%s" % (ref, other)] = {
            "of_medians": r[ref]["median_ms"] / r[other]["median_ms"],
            "paired_median": statistics.median(paired),
            "paired_p10": p10,
            "paired_p90": p90,
            "paired_cpu_median": statistics.median(paired_cpu) if paired_cpu else None,
        }
    return out


def fmt_table(title, summary, names):
    lines = ["", "== %s ==" % title]
    w = max([8] + [len(n) for n in names])
    rw = max([16] + [len(k) for k in summary["ratios"]])
    hdr = "%-*s %10s %17s %9s %12s %14s" % (
        w, "runtime", "median ms", "p10 - p90 ms", "mean ms", "cpu ms (med)", "peak RSS MiB")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for n in names:
        s = summary["runtimes"][n]
        lines.append("%-*s %10.2f %17s %9.2f %12.2f %14.1f" % (
            w, n, s["median_ms"], "%.2f - %.2f" % (s["p10_ms"], s["p90_ms"]),
            s["mean_ms"], s["cpu_median_ms"], s["peak_rss_mib"]))
    if summary["ratios"]:
        lines.append("")
        lines.append("%-*s %12s %12s %16s %19s" % (
            rw, "ratio", "of medians", "paired", "paired cpu time", "paired p10 - p90"))
        for key, v in summary["ratios"].items():
            pc = "%.2f" % v["paired_cpu_median"] if v["paired_cpu_median"] is not None else "-"
            lines.append("%-*s %12.2f %12.2f %16s %19s" % (
                rw, key, v["of_medians"], v["paired_median"], pc,
                "%.2f - %.2f" % (v["paired_p10"], v["paired_p90"])))
    return "\n".join(lines)


def run_burst(runner, names, size, reps, progress):
    """reps bursts of size back-to-back runs per runtime, order rotating."""
    totals = {n: {"wall_ns": [], "cpu_ns": [], "runs_ns": []} for n in names}
    orders = []
    for rep in range(reps):
        order = rotation(names, rep)
        orders.append(order)
        for name in order:
            cpu = 0
            runs = []
            t0 = time.perf_counter_ns()
            for k in range(size):
                cid = "%s-%s-burst-%d-%d" % (runner.id_prefix, name, rep + 1, k + 1)
                wall, c, _ = runner.run(name, cid)
                cpu += c
                runs.append(wall)
            t1 = time.perf_counter_ns()
            totals[name]["runs_ns"].append(runs)
            totals[name]["wall_ns"].append(t1 - t0)
            totals[name]["cpu_ns"].append(cpu)
            if progress:
                sys.stderr.write("\r  burst  repetition %d/%d %-16s" % (rep + 1, reps, name))
                sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    return totals, orders


def summarize_burst(totals, names, refs, size, pairs=()):
    out = {"burst_size": size, "runtimes": {}, "ratios": {}}
    for n in names:
        wall = [x / 1e9 for x in totals[n]["wall_ns"]]
        cpu = [x / 1e9 for x in totals[n]["cpu_ns"]]
        out["runtimes"][n] = {
            "n": len(wall),
            "median_total_s": statistics.median(wall),
            "min_total_s": min(wall),
            "max_total_s": max(wall),
            "per_run_ms": statistics.median(wall) * 1000.0 / size,
            "cpu_median_total_s": statistics.median(cpu),
            "total_s": wall,
            "cpu_total_s": cpu,
            "run_wall_ms": [[x / 1e6 for x in r] for r in totals[n]["runs_ns"]],
        }
    for ref, other in [(ref, o) for ref in refs for o in names if o not in refs] + list(pairs):
        paired = [a / b for a, b in zip(totals[ref]["wall_ns"], totals[other]["wall_ns"])]
        paired_cpu = [a / b for a, b in zip(totals[ref]["cpu_ns"], totals[other]["cpu_ns"]) if b > 0]
        out["ratios"]["%s/%s" % (ref, other)] = {
            "paired_median": statistics.median(paired),
            "paired_min": min(paired),
            "paired_max": max(paired),
            "paired_cpu_median": statistics.median(paired_cpu) if paired_cpu else None,
            "paired": paired,
        }
    return out


def fmt_burst(title, summary, names):
    lines = ["", "== %s ==" % title]
    w = max([8] + [len(n) for n in names])
    rw = max([16] + [len(k) for k in summary["ratios"]])
    hdr = "%-*s %14s %19s %12s %15s" % (
        w, "runtime", "median total s", "min - max s", "ms per run", "cpu total s")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for n in names:
        s = summary["runtimes"][n]
        lines.append("%-*s %14.3f %19s %12.2f %15.3f" % (
            w, n, s["median_total_s"], "%.3f - %.3f" % (s["min_total_s"], s["max_total_s"]),
            s["per_run_ms"], s["cpu_median_total_s"]))
    if summary["ratios"]:
        lines.append("")
        lines.append("%-*s %12s %15s %16s" % (rw, "ratio", "paired", "paired min - max", "paired cpu time"))
        for key, v in summary["ratios"].items():
            pc = "%.2f" % v["paired_cpu_median"] if v["paired_cpu_median"] is not None else "-"
            lines.append("%-*s %12.2f %15s %16s" % (
                rw, key, v["paired_median"], "%.2f - %.2f" % (v["paired_min"], v["paired_max"]), pc))
    return "\n".join(lines)


def target_value(results, mode, key, metric):
    """The measured value a --target compares, or None where not measured."""
    res = results.get(mode)
    if not res or key not in res["ratios"]:
        return None
    if metric == "wall":
        return res["ratios"][key]["paired_median"]
    if metric == "cpu":
        return res["ratios"][key]["paired_cpu_median"]
    a, b = key.split("/", 1)
    ra, rb = res["runtimes"][a].get("peak_rss_mib"), res["runtimes"][b].get("peak_rss_mib")
    return ra / rb if ra is not None and rb else None


def parse_target(text):
    """MODE:A/B:METRIC<=LIMIT (METRIC wall, cpu or rss) -> tuple."""
    head, sep, limit = text.partition("<=")
    parts = head.split(":")
    if not sep or len(parts) != 3 or "/" not in parts[1] or parts[2] not in ("wall", "cpu", "rss"):
        raise SystemExit("bench_driver: --target wants MODE:A/B:wall|cpu|rss<=LIMIT, got %r" % text)
    try:
        return parts[0], parts[1], parts[2], float(limit)
    except ValueError:
        raise SystemExit("bench_driver: --target limit is not a number: %r" % text)


def main(argv):
    a = parse_args(argv)
    names = [n for n, _ in a.cmd]
    exec_names = [n for n, _ in a.exec_cmd]
    rootless_names = [n for n, _ in a.rootless_cmd]
    targets = [parse_target(t) for t in a.target]
    pairs = {}
    mode_names = {"warm": names, "cold": names, "burst": names, "exec": exec_names,
                  "rootless": rootless_names}
    for mode, pair in a.pair:
        x, sep, y = pair.partition("/")
        if mode not in mode_names or not sep or x not in mode_names[mode] \
                or y not in mode_names[mode] or x == y:
            raise SystemExit("bench_driver: --pair %s %s: want a mode and A/B, two of its names"
                             % (mode, pair))
        pairs.setdefault(mode, []).append((x, y))
    meta = {}
    for kv in a.meta:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit("bench_driver: --meta wants KEY=VALUE, got %r" % kv)
        meta[k] = v

    runner = Runner(a.cmd, a.id_prefix, a.timeout, a.scratch)
    exec_runner = Runner(a.exec_cmd, a.id_prefix, a.timeout, a.scratch)
    rootless_runner = Runner(a.rootless_cmd, a.id_prefix, a.timeout, a.scratch,
                             users=a.users, envs=a.envs)
    runners = (runner, exec_runner, rootless_runner)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_signal)
    progress = not a.quiet and sys.stderr.isatty()
    gc.disable()
    results = {}
    started = time.time()
    rss_on = bool(a.rss_wrapper and a.rss_runs > 0)
    floor_kib = None
    try:
        if a.warmup and any(m in a.modes for m in ("warm", "cold", "burst")):
            run_mode(runner, names, "warm", a.warmup, 0.0, progress, tag="warmup")
        if a.rss_wrapper:
            floor_kib = runner.floor_rss(a.rss_wrapper)
        for mode in ROUND_MODES:
            if mode not in a.modes:
                continue
            sleep_s = a.sleep if mode == "cold" else 0.0
            samples, orders = run_mode(runner, names, mode, a.runs, sleep_s, progress)
            rss = None
            if rss_on:
                rss, _ = run_mode(runner, names, mode, a.rss_runs, sleep_s, progress,
                                  tag=mode + "-rss", rss_wrapper=a.rss_wrapper)
            results[mode] = summarize(samples, names, a.refs, rss, pairs.get(mode, ()))
            results[mode]["orders"] = [" ".join(o) for o in orders]
        if "burst" in a.modes:
            totals, orders = run_burst(runner, names, a.burst_size, a.burst_reps, progress)
            results["burst"] = summarize_burst(totals, names, a.refs, a.burst_size,
                                               pairs.get("burst", ()))
            results["burst"]["orders"] = [" ".join(o) for o in orders]
        for mode, r, mnames, refs in (("exec", exec_runner, exec_names, a.exec_refs),
                                      ("rootless", rootless_runner, rootless_names,
                                       a.rootless_refs)):
            if mode not in a.modes:
                continue
            if a.warmup:
                run_mode(r, mnames, mode, a.warmup, 0.0, progress, tag=mode + "-warmup")
            samples, orders = run_mode(r, mnames, mode, a.runs, 0.0, progress)
            rss = None
            if rss_on:
                rss, _ = run_mode(r, mnames, mode, a.rss_runs, 0.0, progress,
                                  tag=mode + "-rss", rss_wrapper=a.rss_wrapper)
            results[mode] = summarize(samples, mnames, refs, rss, pairs.get(mode, ()))
            results[mode]["orders"] = [" ".join(o) for o in orders]
    except RunFailed as e:
        if progress:
            sys.stderr.write("\n")
        sys.stderr.write("bench_driver: %s\n" % e)
        return 1
    finally:
        for r in runners:
            r.close()
    elapsed = time.time() - started

    titles = {
        "warm": "warm: back to back, %d rounds (after %d warm-up rounds), order rotates each round"
                % (a.runs, a.warmup),
        "cold": "cold: %.1f s idle before each run, %d rounds, order rotates each round"
                % (a.sleep, a.runs),
        "burst": "burst: %d back-to-back runs of one runtime timed as one block, %d repetitions, "
                 "order of runtimes rotates each repetition" % (a.burst_size, a.burst_reps),
        "exec": "exec: one process exec'd into a running container per round, %d rounds "
                "(after %d warm-up rounds), order rotates each round" % (a.runs, a.warmup),
        "rootless": "rootless: one run per round as a user and as root, %d rounds "
                    "(after %d warm-up rounds), order rotates each round" % (a.runs, a.warmup),
    }
    for mode in MODES:
        if mode not in results:
            continue
        if mode == "burst":
            print(fmt_burst(titles[mode], results[mode], names))
        else:
            print(fmt_table(titles[mode], results[mode], mode_names[mode]))
    print("")
    print("median/p10/p90/mean: wall time from posix_spawn to wait4; cpu: user+sys of the")
    print("waited-for tree (median); paired: median over rounds of A_time / B_time for")
    print("ratio A/B, in the same round; paired p10 - p90: the spread of those ratios.")
    if "burst" in results:
        print("burst: total wall time of a block of runs (first spawn to last wait4) and the")
        print("sum of their cpu times; paired: median (and min - max) over repetitions of")
        print("A_total / B_total.")
    if rss_on:
        print("peak RSS: max ru_maxrss (largest single process of the runtime's tree) over %d"
              % a.rss_runs)
        print("extra rounds per mode run through %s -f %%M; that wrapper's floor (/bin/true"
              % a.rss_wrapper)
        print("through it) is %.1f MiB. Directly spawned runs report at least the driver's own"
              % (floor_kib / 1024.0))
        direct = [min(r["maxrss_kib_wait4"]) for m in ROUND_MODES + ("exec", "rootless")
                  if m in results for r in results[m]["runtimes"].values()]
        if direct:
            print("RSS, %.1f MiB here (kept in the JSON as maxrss_kib_wait4)."
                  % (min(direct) / 1024.0))
        if a.users:
            print("Commands run as another user (--as) report through the wrapper's stderr.")
    else:
        print("peak RSS: max wait4 ru_maxrss of the timed runs; NOTE: this includes the driver's")
        print("own RSS (the child is a copy of the Python process until it execs).")
    target_rows = []
    for mode, key, metric, limit in targets:
        v = target_value(results, mode, key, metric)
        if v is None:
            continue
        target_rows.append({"mode": mode, "ratio": key, "metric": metric, "limit": limit,
                            "value": v, "met": None if v is None else v <= limit})
    if target_rows:
        print("")
        print("== targets: paired median ratio (rss: ratio of peak RSS) at most the limit ==")
        kw = max(len(t["ratio"]) for t in target_rows)
        for t in target_rows:
            # Three decimals: a value printed as the limit is then never
            # "NOT met" without showing why.
            print("%-8s %-*s %-4s <= %4.2f  %6.3f  %s" % (
                t["mode"], kw, t["ratio"], t["metric"], t["limit"], t["value"],
                "met" if t["met"] else "NOT met"))
    print("driver time: %.1f s" % elapsed)

    if a.json_out:
        doc = {
            "meta": meta,
            "params": {"runs": a.runs, "warmup_rounds": a.warmup, "cold_sleep_s": a.sleep,
                       "rss_wrapper": a.rss_wrapper, "rss_rounds": a.rss_runs,
                       "rss_wrapper_floor_kib": floor_kib,
                       "references": a.refs, "id_prefix": a.id_prefix,
                       "commands": {n: runner.argv_for(n, "{id}") for n in names},
                       "modes": a.modes,
                       "burst_size": a.burst_size, "burst_reps": a.burst_reps,
                       "exec_references": a.exec_refs,
                       "exec_commands": {n: exec_runner.argv_for(n, "{id}") for n in exec_names},
                       "rootless_references": a.rootless_refs,
                       "rootless_commands": {n: rootless_runner.argv_for(n, "{id}")
                                             for n in rootless_names},
                       "rootless_users": {n: "%d:%d" % u for n, u in a.users.items()}},
            "modes": results,
            "targets": target_rows,
            "driver_seconds": elapsed,
        }
        tmp = a.json_out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, a.json_out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (KeyboardInterrupt, Interrupted) as e:
        sys.stderr.write("\nbench_driver: interrupted (%s)\n" % (e or "SIGINT"))
        sys.exit(130)
