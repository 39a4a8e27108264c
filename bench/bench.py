#!/usr/bin/env python3
"""Benchmark stepwise against make and ninja on the same generated pipelines.

    python3 bench/bench.py                 # N = 1000, 5 repetitions
    python3 bench/bench.py -n 10000 -r 3
    python3 bench/bench.py -n 100000 -r 1 --tools stepwise

Every step is `echo i > out/step_i`. Shapes: "chain" (each step after the one
before) and "wide" (N independent steps, then one that needs them all).
Scenarios, each on a fresh copy of the pipeline:

    cold-chain-j1   nothing done, chain, -j1
    cold-wide-j2    nothing done, wide, -j2
    noop            everything done, chain: how long until it says so
    noop-wide, noop-matrix
                    everything done, the wide shape written out and written
                    as one matrix step (stepwise only: they must match)
    half-chain-j1   the first half done, chain, -j1
    plan-journal    `stepwise plan` with a journal holding 100 runs' worth
                    of records (stepwise only)
    plan-snapshot   the same, once a journal writer has left a history
                    snapshot of that journal (stepwise only)
    plan-fanin      `stepwise plan`, nothing done: a template of F
                    expansions each writing a file, and one of F expansions
                    each reading all of them (F = --fan-in; stepwise only)
    plan-raw-chain, plan-raw-chain-reversed
                    `stepwise plan`, nothing done: a chain of N steps each
                    reading a file no step makes (raw data not fetched
                    yet), its dependencies in the file's order and against
                    it (stepwise only)

Tools run A/B interleaved (every repetition runs each tool once, in turn), so
a noisy machine slows them alike. Prints medians, the ratio of stepwise to
each other tool, and each tool's peak resident memory (max RSS of the
measured process, from wait4).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STEPWISE = os.path.join(ROOT, "target", "release", "stepwise")


def generate(folder, n, shape, fan_in=0):
    """Writes stepwise.toml, Makefile and build.ninja for the same pipeline
    (for the plan-only shapes, stepwise.toml alone)."""
    os.makedirs(os.path.join(folder, "out"), exist_ok=True)
    toml, make, ninja = [], [], []
    if shape == "fanin":
        values = ", ".join(str(i) for i in range(fan_in))
        toml.append(f'[[step]]\nname = "a"\nmatrix = {{ i = [{values}] }}\nrun = "echo {{i}} > out/a_{{i}}"\noutputs = ["out/a_{{i}}"]\n')
        toml.append(f'[[step]]\nname = "b"\nmatrix = {{ j = [{values}] }}\ninputs = ["{{a.outputs}}"]\nrun = "cat out/a_* > out/b_{{j}}"\noutputs = ["out/b_{{j}}"]\n')
    elif shape in ("raw-chain", "raw-chain-reversed"):
        for i in range(n):
            after = ""
            if shape == "raw-chain-reversed":
                after = f'after = ["s{i + 1}"]\n' if i + 1 < n else "after = []\n"
            toml.append(f'[[step]]\nname = "s{i}"\n{after}inputs = ["raw/in{i}.csv"]\nrun = "cp raw/in{i}.csv out/step_{i}"\noutputs = ["out/step_{i}"]\n')
    ninja.append("rule w\n  command = echo $i > $out\n")
    make.append(".SUFFIXES:\n")
    if shape == "chain":
        make.append(f"all: out/step_{n - 1}\n")
        for i in range(n):
            toml.append(f'[[step]]\nname = "s{i}"\nrun = "echo {i} > out/step_{i}"\noutputs = ["out/step_{i}"]\n')
            dep = f"out/step_{i - 1}" if i else ""
            make.append(f"out/step_{i}: {dep}\n\techo {i} > out/step_{i}\n")
            ninja.append(f"build out/step_{i}: w" + (f" | out/step_{i - 1}" if i else "") + f"\n  i = {i}\n")
        ninja.append(f"default out/step_{n - 1}\n")
    elif shape in ("fanin", "raw-chain", "raw-chain-reversed"):
        pass
    elif shape == "matrix":
        # The wide shape written once, as a matrix: must plan and no-op like
        # the same steps written out.
        values = ", ".join(str(i) for i in range(n))
        toml.append(f'[[step]]\nname = "s"\nmatrix = {{ i = [{values}] }}\nrun = "echo {{i}} > out/step_{{i}}"\noutputs = ["out/step_{{i}}"]\n')
        toml.append('[[step]]\nname = "all"\nafter = ["s"]\nrun = "echo done > out/all"\noutputs = ["out/all"]\n')
        for i in range(n):
            make.append(f"out/step_{i}:\n\techo {i} > out/step_{i}\n")
            ninja.append(f"build out/step_{i}: w\n  i = {i}\n")
        outs = " ".join(f"out/step_{i}" for i in range(n))
        make.insert(1, "all: out/all\n")
        make.append(f"out/all: {outs}\n\techo done > out/all\n")
        ninja.append(f"build out/all: w | {outs}\n  i = done\n")
        ninja.append("default out/all\n")
    else:
        names = []
        for i in range(n):
            toml.append(f'[[step]]\nname = "s{i}"\nafter = []\nrun = "echo {i} > out/step_{i}"\noutputs = ["out/step_{i}"]\n')
            make.append(f"out/step_{i}:\n\techo {i} > out/step_{i}\n")
            ninja.append(f"build out/step_{i}: w\n  i = {i}\n")
            names.append(f"s{i}")
        outs = " ".join(f"out/step_{i}" for i in range(n))
        toml.append('[[step]]\nname = "all"\nafter = [' + ", ".join(f'"{s}"' for s in names) + ']\nrun = "echo done > out/all"\noutputs = ["out/all"]\n')
        make.insert(1, "all: out/all\n")
        make.append(f"out/all: {outs}\n\techo done > out/all\n")
        ninja.append(f"build out/all: w | {outs}\n  i = done\n")
        ninja.append("default out/all\n")
    with open(os.path.join(folder, "stepwise.toml"), "w") as f:
        f.write("\n".join(toml))
    with open(os.path.join(folder, "Makefile"), "w") as f:
        f.write("".join(make))
    with open(os.path.join(folder, "build.ninja"), "w") as f:
        f.write("".join(ninja))


def reset(folder):
    """Back to "nothing done"."""
    for name in ("out", ".stepwise"):
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    for name in (".ninja_log", ".ninja_deps"):
        try:
            os.remove(os.path.join(folder, name))
        except FileNotFoundError:
            pass
    os.makedirs(os.path.join(folder, "out"))


def measure(cmd, cwd):
    """Runs cmd; returns its wall-clock seconds. Fails loudly."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        sys.exit(f"{' '.join(cmd)} failed in {cwd} with {proc.returncode}:\n{err[-2000:]}")
    return elapsed


def peak_memory(cmd, cwd):
    """The measured process's peak resident memory in MiB, from GNU time's
    %M in a separate run (so the timed runs carry no wrapper), or None."""
    if not os.path.exists("/usr/bin/time"):
        return None
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd], cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return int(out.read().strip().splitlines()[-1]) / 1024


def quiet(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def commands(tool, stepwise, jobs):
    return {
        "stepwise": [stepwise, "run", "-j", str(jobs)],
        "make": ["make", "-s", f"-j{jobs}"],
        "ninja": ["ninja", "-j", str(jobs)],
    }[tool]


def half_target(tool, stepwise, n):
    last = n // 2 - 1
    return {
        "stepwise": [stepwise, "run", "-j1", f"s{last}"],
        "make": ["make", "-s", "-j1", f"out/step_{last}"],
        "ninja": ["ninja", "-j1", f"out/step_{last}"],
    }[tool]


def long_journal(folder, runs):
    """Makes the journal hold `runs` runs' worth of records: the real, last
    run's records, preceded by copies of them under older run numbers."""
    path = os.path.join(folder, ".stepwise", "journal.jsonl")
    with open(path) as f:
        lines = f.readlines()
    out = []
    for r in range(1, runs):
        for line in lines:
            out.append(line.replace('"run":1,', f'"run":{r},', 1).replace('"run":1}', f'"run":{r}}}', 1))
    for line in lines:
        out.append(line.replace('"run":1,', f'"run":{runs},', 1).replace('"run":1}', f'"run":{runs}}}', 1))
    # Renumbered records no longer match their checksums: make them right.
    resealed = subprocess.run(
        [reseal_binary()], input="".join(out).encode(), stdout=subprocess.PIPE, check=True
    ).stdout
    with open(path, "wb") as f:
        f.write(resealed)
    return len(out)


def reseal_binary():
    """bench/reseal.rs, built beside the release binary if it is not yet."""
    path = os.path.join(ROOT, "target", "release", "examples", "reseal")
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "--release", "--example", "reseal"], cwd=ROOT, check=True)
    return path


def scenario_setup(name, tool, folder, stepwise, n):
    reset(folder)
    if name in ("noop", "noop-wide", "noop-matrix"):
        quiet(commands(tool, stepwise, 2), folder)
    elif name == "half-chain-j1":
        quiet(half_target(tool, stepwise, n), folder)
    elif name in ("plan-journal", "plan-snapshot"):
        quiet(commands(tool, stepwise, 2), folder)


SCENARIOS = {
    # name: (shape, jobs, tools that take part)
    "cold-chain-j1": ("chain", 1, None),
    "cold-wide-j2": ("wide", 2, None),
    "noop": ("chain", 2, None),
    "half-chain-j1": ("chain", 1, None),
    "plan-journal": ("chain", 1, ["stepwise"]),
    # The same journal, once a command that writes the journal (here an
    # import of nothing) has left a history snapshot of it (stepwise only).
    "plan-snapshot": ("chain", 1, ["stepwise"]),
    # The same as noop-wide, written as one matrix step (stepwise only).
    "noop-wide": ("wide", 2, ["stepwise"]),
    "noop-matrix": ("matrix", 2, ["stepwise"]),
    # `plan` alone, nothing done: whether a missing input is provided
    # upstream (stepwise only).
    "plan-fanin": ("fanin", 1, ["stepwise"]),
    "plan-raw-chain": ("raw-chain", 1, ["stepwise"]),
    "plan-raw-chain-reversed": ("raw-chain-reversed", 1, ["stepwise"]),
}
PLAN_ONLY = ("plan-fanin", "plan-raw-chain", "plan-raw-chain-reversed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="steps per pipeline (default 1000)")
    ap.add_argument("-r", "--reps", type=int, default=5, help="repetitions per scenario (default 5)")
    ap.add_argument("--tools", default="stepwise,make,ninja", help="comma-separated (default: stepwise,make,ninja)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated scenario names")
    ap.add_argument("--stepwise", default=DEFAULT_STEPWISE, help="the stepwise binary (default: target/release)")
    ap.add_argument("--journal-runs", type=int, default=100, help="runs' worth of records for plan-journal")
    ap.add_argument("--fan-in", type=int, default=500, help="expansions of each template in plan-fanin (default 500)")
    args = ap.parse_args()

    if not os.path.exists(args.stepwise):
        sys.exit(f"no stepwise binary at {args.stepwise}; run `cargo build --release` first")
    tools = [t for t in args.tools.split(",") if t == "stepwise" or shutil.which(t)]
    missing = set(args.tools.split(",")) - set(tools)
    if missing:
        print(f"(not installed, skipped: {', '.join(sorted(missing))})")
    versions = {
        "stepwise": subprocess.run([args.stepwise, "--version"], capture_output=True, text=True).stdout.strip(),
        "make": subprocess.run(["make", "--version"], capture_output=True, text=True).stdout.splitlines()[0] if "make" in tools else "",
        "ninja": ("ninja " + subprocess.run(["ninja", "--version"], capture_output=True, text=True).stdout.strip()) if "ninja" in tools else "",
    }
    print(f"N = {args.n}, {args.reps} repetitions, {os.cpu_count()} CPUs; " + "; ".join(v for v in versions.values() if v))

    work = tempfile.mkdtemp(prefix="stepwise-bench-")
    results = {}
    try:
        for name in args.scenarios.split(","):
            shape, jobs, only = SCENARIOS[name]
            taking_part = [t for t in tools if only is None or t in only]
            folders = {}
            for tool in taking_part:
                folders[tool] = os.path.join(work, f"{name}-{tool}")
                generate(folders[tool], args.n, shape, args.fan_in)
            times = {t: [] for t in taking_part}
            peak = {}
            records = None

            def prepared(tool):
                nonlocal records
                folder = folders[tool]
                scenario_setup(name, tool, folder, args.stepwise, args.n)
                if name in ("plan-journal", "plan-snapshot"):
                    records = long_journal(folder, args.journal_runs)
                    if name == "plan-snapshot":
                        with open(os.path.join(folder, "nothing.json"), "w") as f:
                            f.write("[]")
                        quiet([args.stepwise, "checkpoint", "import", "nothing.json"], folder)
                    return [args.stepwise, "plan"]
                if name in PLAN_ONLY:
                    return [args.stepwise, "plan"]
                return commands(tool, args.stepwise, jobs)

            for _ in range(args.reps):
                for tool in taking_part:
                    cmd = prepared(tool)
                    times[tool].append(measure(cmd, folders[tool]))
            for tool in taking_part:
                cmd = prepared(tool)
                peak[tool] = peak_memory(cmd, folders[tool])
            results[name] = (times, peak, records)
            line = f"{name:14}"
            for tool in taking_part:
                mem = f" ({peak[tool]:.1f} MiB)" if peak[tool] is not None else ""
                line += f"  {tool} {fmt(statistics.median(times[tool]))}{mem}"
            if "stepwise" in times:
                for other in ("make", "ninja"):
                    if other in times:
                        ratio = statistics.median(times["stepwise"]) / statistics.median(times[other])
                        line += f"  stepwise/{other} {ratio:.2f}"
            if records:
                line += f"  [{records} journal records]"
            print(line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fmt(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    main()
