#!/usr/bin/env python3
"""Same-run A/B of the store benches across builds (used for docs/PERFORMANCE.md,
"Store: A/B across builds").

Build each version's bench binaries and copy them as /tmp/<label>-share and
/tmp/<label>-attach, e.g. for the commit before a change:

    git archive <old> | tar -x -C /tmp/old && (cd /tmp/old && \\
      CARGO_TARGET_DIR=$PWD/target cargo bench --bench share --bench attach --no-run)
    # copy target/release/deps/{share,attach}-<hash> to /tmp/old-{share,attach}

then run, from the repository root (criterion writes under target/criterion):

    python3 benches/ab.py old new [more labels] [--rounds 5]

Every round runs each label once, in a rotated order, on a filtered set of
benches (memcpy_faulted and the naive design are controls: they run no shard
code, so their spread is the machine's noise). Prints the median of the per-round
criterion medians and the ratio of each label to the first.
"""
import re
import statistics
import subprocess
import sys

FILTERS = {
    "share": "memcpy_faulted|share/4k/default|share/2m/default|share_100k",
    "attach": "in_child/1024MiB|end_to_end/1MiB|end_to_end/noop",
}
UNIT = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def run(label, bench):
    out = subprocess.run(
        [f"/tmp/{label}-{bench}", "--bench", FILTERS[bench]],
        capture_output=True,
        text=True,
    ).stdout
    got, name = {}, None
    for line in out.splitlines():
        if line and not line[0].isspace() and not line.startswith(("Benchmarking", "Found")):
            name = line.split()[0]
        t = re.search(r"time:\s+\[(\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\]", line)
        if t and "%" not in line and name:
            got[name] = float(t.group(3)) * UNIT[t.group(4)]
            name = None
    return got


def main():
    args = sys.argv[1:]
    rounds = 5
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i : i + 2]
    labels = args or ["base", "new"]
    res = {}
    for r in range(rounds):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        if r % 2:
            order.reverse()
        for bench in FILTERS:
            for label in order:
                for name, v in run(label, bench).items():
                    res.setdefault((name, label), []).append(v)
            print(f"round {r} {bench} done", flush=True)
    names = sorted({n for n, _ in res})
    for n in names:
        base = statistics.median(res.get((n, labels[0]), [float("nan")]))
        cells = []
        for label in labels:
            vals = res.get((n, label), [])
            if vals:
                m = statistics.median(vals)
                cells.append(f"{label} {m * 1e3:.3f} ms ({m / base:.2f}x)")
        print(f"{n:36s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
