"""Import / DAG-parse cost: ``import airflow_provider_wavespeed.operators.wavespeed`` vs the http provider's operator.

Each measurement is a fresh interpreter that first imports ``airflow.sdk`` (every DAG file does,
and it already loads httpx and tenacity), then times one import with ``time.perf_counter``.
Candidates alternate, best of ``--repeats``. Also reported: the modules the import adds on top of
``airflow.sdk`` and the provider's own modules with the largest self time (``-X importtime``).

    .venv/bin/python benchmarks/bench_import.py            # best of 9
    .venv/bin/python benchmarks/bench_import.py --quick    # one try each, about 10 s
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import _common as common

TARGETS = {
    "wavespeed operators": "airflow_provider_wavespeed.operators.wavespeed",
    "wavespeed sensor": "airflow_provider_wavespeed.sensors.wavespeed",
    "http operator": "airflow.providers.http.operators.http",
    "http sensor": "airflow.providers.http.sensors.http",
}
BASELINE = "http operator"
CANDIDATE = "wavespeed operators"
GOAL_MAX_MS = 100.0  # "milliseconds, not noticeable": a DAG folder parses each file in ~0.1-1 s

_PROBE = """
import json, sys, time
import airflow.sdk
before = set(sys.modules)
started = time.perf_counter()
import {module}
elapsed = time.perf_counter() - started
new = sorted(set(sys.modules) - before)
print(json.dumps({{"ms": elapsed * 1000, "new_modules": len(new),
                  "outside": [m for m in new if not m.startswith(("airflow_provider_wavespeed", "{module}"))]}}))
"""


def measure(module: str) -> dict[str, object]:
    done = subprocess.run(
        [common.PYTHON, "-c", _PROBE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=common.REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing {module} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def importtime_top(module: str, count: int = 8) -> list[tuple[str, float, float]]:
    """(module, self ms, cumulative ms) of the slowest modules newly imported by ``module``."""
    code = f"import airflow.sdk, sys; sys.stderr.write('@@mark@@\\n'); import {module}"
    done = subprocess.run(
        [common.PYTHON, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=120, cwd=common.REPO
    )
    lines = done.stderr.split("@@mark@@", 1)[-1].splitlines()
    rows = []
    for line in lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:") :].split("|")]
        if not parts[0].isdigit():
            continue
        rows.append((parts[2].strip(), int(parts[0]) / 1000, int(parts[1]) / 1000))
    return sorted(rows, key=lambda r: r[1], reverse=True)[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one interpreter per module, operators only")
    parser.add_argument("--repeats", type=int, help="fresh interpreters per module (default 9)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 9)
    names = [CANDIDATE, BASELINE] if args.quick else list(TARGETS)

    common.print_machine()
    samples: dict[str, list[float]] = {name: [] for name in names}
    info: dict[str, dict[str, object]] = {}
    for rnd in range(repeats):
        for name in names if rnd % 2 == 0 else names[::-1]:
            result = measure(TARGETS[name])
            samples[name].append(float(result["ms"]))  # type: ignore[arg-type]
            info[name] = result
        print(f"  round {rnd + 1}/{repeats}: " + ", ".join(f"{n} {samples[n][-1]:.0f} ms" for n in names), flush=True)

    base = min(samples[BASELINE])
    rows = []
    for name in names:
        best = min(samples[name])
        median = common.percentile(samples[name], 50)
        outside = info[name]["outside"]
        rows.append([name, TARGETS[name], best, median, f"{best / base:.2f}x", info[name]["new_modules"], len(outside)])  # type: ignore[arg-type]
    common.print_table(
        f"Import after `import airflow.sdk`, fresh interpreter each (best and median of {repeats}; "
        f"ratio = best / best of {BASELINE})",
        ["what", "module", "best ms", "median ms", "ratio", "new modules", "of which not its own package"],
        rows,
    )
    ours = min(samples[CANDIDATE])
    common.print_table(
        "Goals (import)",
        ["measure", "measured", "goal", "verdict"],
        [
            [
                f"{CANDIDATE} import (best)",
                f"{ours:.0f} ms",
                f"< {GOAL_MAX_MS:.0f} ms (milliseconds, no parse-time work)",
                common.verdict(ours < GOAL_MAX_MS),
            ],
            [
                f"{CANDIDATE} vs {BASELINE}",
                f"{ours / base:.2f}x",
                "<= 1x (not worse than the http provider)",
                common.verdict(ours <= base),
            ],
        ],
    )
    if not args.quick:
        extra = info[CANDIDATE]["outside"]
        print(f"modules outside the provider loaded by {TARGETS[CANDIDATE]}: {', '.join(extra) or '-'}")  # type: ignore[arg-type]
        common.print_table(
            f"Slowest modules newly imported by {TARGETS[CANDIDATE]} (-X importtime, one run)",
            ["module", "self ms", "cumulative ms"],
            importtime_top(TARGETS[CANDIDATE]),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
