#!/usr/bin/env python3
"""Soak test: thousands of random pipelines, random failures, retries and
kill -9s of the runner, checking after every invocation that what stepwise
promises still holds. Not part of CI: run it for as long as you can spare.

    cargo build --release
    python3 bench/soak.py --minutes 20            # or --pipelines 5000

For each random pipeline (2 to 8 steps, a random dependency graph, some
steps with declared outputs, random retries), it invokes `stepwise run`
several times with a random -j; each step fails at random, and about half
of the invocations are killed with SIGKILL at a random instant. After
every invocation it checks:

- the journal loads (`plan --json` exits 0) and `fsck` finds no problem;
- no success was lost: every successful attempt recorded before is still
  in the journal, and the journal grew only by appending;
- no success was repeated: a step with a recorded success never starts
  again (no new `start` record, no new line in its execution log);

and at the end, with failures switched off, that one more run completes
(exit 0, every step done, nothing left in the plan).

It prints one summary line, and on the first violation the folder to look
at, then exits 1.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Violation(Exception):
    pass


def make_pipeline(rng):
    n = rng.randint(2, 8)
    names = [f"s{i}" for i in range(n)]
    lines = ['[pipeline]', 'shell = ["bash", "-c"]', 'kill_grace = "100ms"', ""]
    for i, name in enumerate(names):
        fail = rng.choice([0, 0, 10, 30, 60])
        sleep = rng.choice(["0", "0.01", "0.03", "0.08"])
        has_output = rng.random() < 0.4
        write = f" && echo $RANDOM > out/{name}.txt" if has_output else ""
        run = (
            f"echo {name} >> ran; sleep {sleep}; "
            f"if [ ! -f nofail ] && (( RANDOM % 100 < {fail} )); then exit 1; fi"
            f"{write} && echo {name} >> ok"
        )
        lines += ["[[step]]", f'name = "{name}"', f"run = {json.dumps(run)}"]
        if i > 0 and rng.random() < 0.5:
            deps = rng.sample(names[:i], rng.randint(0, min(3, i)))
            lines.append(f"after = {json.dumps(deps)}")
        if has_output:
            lines.append(f'outputs = ["out/{name}.txt"]')
        retries = rng.choice([0, 0, 1, 2])
        if retries:
            lines += [f"retries = {retries}", 'retry_delay = "10ms"']
        lines.append("")
    return names, "\n".join(lines)


def journal_records(space):
    path = os.path.join(space, ".stepwise", "journal.jsonl")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return b"", []
    records = []
    for line in data.split(b"\n"):
        line = line.strip(b"\0")
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass  # a torn last line; stepwise itself judges the rest
    return data, records


def successes(records):
    return {
        (r["step"], r["attempt"])
        for r in records
        if r.get("event") == "finish" and r.get("ok")
    }


def starts(records):
    return [(r["step"], r["attempt"]) for r in records if r.get("event") == "start"]


def count_lines(space, name):
    try:
        with open(os.path.join(space, name)) as f:
            return [l.strip() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def stepwise(binary, space, *args, timeout=60):
    return subprocess.run(
        [binary, *args],
        cwd=space,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
    )


def check_loads(binary, space, when):
    plan = stepwise(binary, space, "plan", "--json")
    if plan.returncode != 0:
        raise Violation(f"{when}: plan exits {plan.returncode}: {plan.stderr.decode()}")
    fsck = stepwise(binary, space, "fsck")
    if fsck.returncode != 0:
        raise Violation(f"{when}: fsck exits {fsck.returncode}: {fsck.stdout.decode()}")
    return json.loads(plan.stdout)


def soak_one(binary, rng, stats):
    names, toml = make_pipeline(rng)
    space = tempfile.mkdtemp(prefix="stepwise-soak-")
    with open(os.path.join(space, "stepwise.toml"), "w") as f:
        f.write(toml)
    os.mkdir(os.path.join(space, "out"))
    invocations = rng.randint(1, 6)
    for i in range(invocations):
        before_bytes, before = journal_records(space)
        done_before = {s for s, _ in successes(before)}
        ran_before = count_lines(space, "ran")
        proc = subprocess.Popen(
            [binary, "run", "-j", str(rng.randint(1, 3))],
            cwd=space,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        killed = False
        if rng.random() < 0.5:
            try:
                proc.wait(timeout=rng.uniform(0, 0.3))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                killed = True
        code = proc.wait(timeout=120)
        stats["invocations"] += 1
        stats["kills"] += killed
        if not killed and code not in (0, 1):
            raise Violation(f"run {i + 1} exited {code}\n{space}")
        when = f"after run {i + 1} of {space}"
        check_loads(binary, space, when)
        after_bytes, after = journal_records(space)
        # Appending only: the next writer may cut a torn tail, nothing else.
        whole = before_bytes[: before_bytes.rfind(b"\n") + 1]
        if not after_bytes.startswith(whole):
            raise Violation(f"{when}: the journal was rewritten, not appended to")
        lost = successes(before) - successes(after)
        if lost:
            raise Violation(f"{when}: recorded successes lost: {sorted(lost)}")
        new_starts = starts(after)[len(starts(before)) :]
        repeated = sorted({s for s, _ in new_starts if s in done_before})
        if repeated:
            raise Violation(f"{when}: steps already done started again: {repeated}")
        ran_after = count_lines(space, "ran")
        for name in done_before:
            if ran_after.count(name) != ran_before.count(name):
                raise Violation(f"{when}: {name} was done and ran again")
        stats["failures"] += sum(
            1 for r in after[len(before) :] if r.get("event") == "finish" and not r.get("ok")
        )
    # The final run, failures switched off, completes.
    open(os.path.join(space, "nofail"), "w").close()
    final = stepwise(binary, space, "run")
    if final.returncode != 0:
        raise Violation(f"the final run exits {final.returncode}: {final.stderr.decode()}\n{space}")
    plan = check_loads(binary, space, f"after the final run of {space}")
    if plan["remaining"] != 0 or plan["done"] != len(names):
        raise Violation(f"the final plan is not all done: {plan}\n{space}")
    _, records = journal_records(space)
    done = {s for s, _ in successes(records)}
    if done != set(names):
        raise Violation(f"steps without a recorded success: {set(names) - done}\n{space}")
    stats["pipelines"] += 1
    shutil.rmtree(space)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--pipelines", type=int, default=None, help="stop after this many")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "stepwise"))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    stats = {"pipelines": 0, "invocations": 0, "kills": 0, "failures": 0}
    started = time.monotonic()
    deadline = started + args.minutes * 60
    try:
        while time.monotonic() < deadline and (
            args.pipelines is None or stats["pipelines"] < args.pipelines
        ):
            soak_one(args.bin, rng, stats)
    except Violation as v:
        print(f"VIOLATION (seed {seed}): {v}", file=sys.stderr)
        print(f"soak: seed {seed}: {stats}", file=sys.stderr)
        return 1
    minutes = (time.monotonic() - started) / 60
    print(
        f"soak: seed {seed}, {minutes:.1f} min: {stats['pipelines']} pipelines, "
        f"{stats['invocations']} runs, {stats['kills']} kill -9s, "
        f"{stats['failures']} failed attempts, 0 violations"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
