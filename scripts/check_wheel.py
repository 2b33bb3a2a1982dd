"""`make test-wheel`: build the sdist and wheel, check them, install the wheel the way a user does, use it.

1. ``python -m build`` (the sdist, then the wheel built from that sdist) into a temporary folder, and
   ``twine check --strict`` on both.
2. The wheel's contents: ``py.typed``, the provider entry point, the ``wavespeed-emulator`` script and the
   ``h11`` requirement are there; ``tests/``, ``example_dags/``, bytecode and anything outside the package
   are not.
3. A brand-new venv (``--without-pip``; this pip installs into it with ``--python``, so pip's cache and
   configuration are reused) gets the wheel, not editable, with ``-c constraints-dev.txt``, from a
   temporary working directory so the source tree is not importable.
4. In that venv, with a throw-away AIRFLOW_HOME and no AIRFLOW_* or PYTHON* variables from the caller:
   the package imports from site-packages with every module its provider info names;
   ``airflow providers get`` shows the provider with the wheel's version; ``airflow providers hooks``
   shows the ``wavespeed`` connection type with its hook; ``wavespeed-emulator --help`` works, and the
   emulator, started on 127.0.0.1 (port 0: the OS picks a free one, the banner names it), answers an
   authenticated ``GET /api/v3/balance`` and exits 0 on SIGTERM.

Every wait is bounded; the only network traffic besides pip's and build's is to 127.0.0.1. Exits 1 with
the failing step's output on the first failure. The temporary folder (about 230 MB) goes to /dev/shm
when that is a usable tmpfs and TMPDIR is not set, else to TMPDIR; ``--tmp DIR`` chooses. ``--dist DIR``
keeps the built files, ``--keep`` the temporary folder (venv, AIRFLOW_HOME).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "airflow_provider_wavespeed"
DISTRIBUTION = "airflow-provider-wavespeed"
CONSTRAINTS = ROOT / "constraints-dev.txt"
EMULATOR_KEY = "wheel-check-key"
EMULATOR_BALANCE = 123.25
BANNER = re.compile(r"WaveSpeed emulator listening on (http://\S+)")


class CheckError(Exception):
    pass


#: What the UI plugin's pages load: they must ship in the wheel (no CDN).
UI_FILES = ("run.html", "spend.html", "wavespeed.css", "vendor/chart.umd.min.js", "vendor/chart.js.LICENSE.txt")


def log(message: str) -> None:
    print(f"[check_wheel] {message}", flush=True)


def run(cmd: list[str], *, timeout: float, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; its stdout on success, CheckError with its output on a non-zero exit or a timeout."""
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:  # its output is bytes even with text=True
        output = b"".join(o if isinstance(o, bytes) else o.encode() for o in (exc.stdout, exc.stderr) if o)
        raise CheckError(
            f"timed out after {timeout:.0f} s: {' '.join(cmd)}\n{output.decode(errors='replace')}"
        ) from None
    if done.returncode != 0:
        raise CheckError(f"exit {done.returncode}: {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    return done.stdout


def source_version() -> str:
    text = (ROOT / PACKAGE / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not match:
        raise CheckError(f"no __version__ in {PACKAGE}/__init__.py")
    return match.group(1)


def build(dist: Path, work: Path) -> tuple[Path, Path]:
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], timeout=300, cwd=work)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise CheckError(f"expected one wheel and one sdist in {dist}, found {[p.name for p in dist.iterdir()]}")
    run([sys.executable, "-m", "twine", "check", "--strict", str(wheels[0]), str(sdists[0])], timeout=120, cwd=work)
    return wheels[0], sdists[0]


def check_wheel_contents(wheel: Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"{PACKAGE}-{version}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    problems = []
    if f"{PACKAGE}/py.typed" not in names:
        problems.append("py.typed missing")
    outside = sorted({n.split("/")[0] for n in names} - {PACKAGE, dist_info})
    if outside:
        problems.append(f"top-level entries besides the package and its dist-info: {outside}")
    unwanted = [n for n in names if re.search(r"(^|/)(tests|example_dags|__pycache__)/|\.py[co]$", n)]
    if unwanted:
        problems.append(f"tests, example DAGs or bytecode in the wheel: {unwanted[:10]}")
    requires = re.findall(r"^Requires-Dist: ([^;\n]+)$", metadata, re.MULTILINE)
    if not any(re.match(r"h11\s*>=", r) for r in requires):
        problems.append(f"h11 is not a declared requirement: {requires}")
    if f"Version: {version}\n" not in metadata:
        problems.append(f"METADATA does not say Version: {version}")
    if (
        "[apache_airflow_provider]" not in entry_points
        or "wavespeed-emulator" not in entry_points
        or "[airflow.plugins]" not in entry_points
    ):
        problems.append(f"entry points incomplete:\n{entry_points}")
    pages = [f"{PACKAGE}/ui/static/{name}" for name in UI_FILES]
    missing_pages = [n for n in pages if n not in names]
    if missing_pages:
        problems.append(f"the UI plugin's files are missing (package-data): {missing_pages}")
    if problems:
        raise CheckError(f"{wheel.name}:\n  " + "\n  ".join(problems))
    folders = Counter("/".join(n.split("/")[:2]) if n.count("/") > 1 else n.split("/")[0] for n in names)
    log(f"{wheel.name}: {len(names)} files, {wheel.stat().st_size // 1024} KiB; py.typed, requires h11; no tests/")
    for folder, count in sorted(folders.items()):
        log(f"  {count:3d}  {folder}/" if count > 1 or folder.endswith("dist-info") else f"  {count:3d}  {folder}")


def summarize_sdist(sdist: Path) -> None:
    import tarfile

    with tarfile.open(sdist) as archive:
        names = [m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile() and "/" in m.name]
    tops = Counter(n.split("/")[0] for n in names)
    log(f"{sdist.name}: {len(names)} files: " + ", ".join(f"{top} ({n})" for top, n in sorted(tops.items())))


def clean_env(work: Path) -> dict[str, str]:
    """The caller's environment without Airflow's or Python's settings, and a throw-away AIRFLOW_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env["AIRFLOW_HOME"] = str(work / "airflow_home")
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    return env


def install(wheel: Path, work: Path) -> Path:
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120, cwd=work)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling all of Airflow's installed files takes longer than the few modules the checks
    # import compile on the fly (about half of the install's time on a 2-core machine).
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile"]
    run([*pip, "-c", str(CONSTRAINTS), str(wheel)], timeout=900, cwd=work)
    return venv


def check_imports(venv: Path, work: Path, env: dict[str, str]) -> None:
    code = f"""
import importlib, sys
import {PACKAGE} as package
from {PACKAGE}.get_provider_info import get_provider_info
assert "site-packages" in package.__file__, package.__file__
info = get_provider_info()
kinds = ("operators", "sensors", "hooks", "triggers")
modules = [m for kind in kinds for entry in info.get(kind, []) for m in entry["python-modules"]]
modules += [c["hook-class-name"].rsplit(".", 1)[0] for c in info["connection-types"]]
modules += ["{PACKAGE}.emulator", "{PACKAGE}.emulator.cli"]
for name in modules:
    importlib.import_module(name)
print(package.__file__, len(set(modules)))
"""
    out = run([str(venv / "bin" / "python"), "-c", code], timeout=120, cwd=work, env=env).split()
    log(f"imports from {out[0]}; {out[1]} provider modules import")


def check_provider(venv: Path, work: Path, env: dict[str, str], version: str) -> None:
    airflow = str(venv / "bin" / "airflow")
    out = run([airflow, "providers", "get", DISTRIBUTION, "-o", "json"], timeout=180, cwd=work, env=env)
    got = json.loads(out)
    if got != [{"Provider": DISTRIBUTION, "Version": version}]:
        raise CheckError(f"airflow providers get {DISTRIBUTION}: {got}")
    out = run([airflow, "providers", "hooks", "-o", "json"], timeout=180, cwd=work, env=env)
    hooks = [h for h in json.loads(out) if h.get("connection_type") == "wavespeed"]
    expected = f"{PACKAGE}.hooks.wavespeed.WaveSpeedHook"
    if len(hooks) != 1 or hooks[0].get("class") != expected or hooks[0].get("package_name") != DISTRIBUTION:
        raise CheckError(f"airflow providers hooks: wavespeed connection type {hooks}, expected hook {expected}")
    log(f"airflow providers get: {DISTRIBUTION} {version}; connection type wavespeed -> {expected}")
    out = run([airflow, "plugins", "-o", "json"], timeout=180, cwd=work, env=env)
    plugins = [p for p in json.loads(out) if p.get("name") == "wavespeed"]
    if len(plugins) != 1 or "/wavespeed" not in json.dumps(plugins[0].get("fastapi_apps")):
        raise CheckError(f"airflow plugins: the wavespeed UI plugin is not registered with its app: {plugins}")
    log("airflow plugins: wavespeed (its FastAPI app at /wavespeed, its views)")


def read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def check_emulator(venv: Path, work: Path, env: dict[str, str]) -> None:
    emulator = str(venv / "bin" / "wavespeed-emulator")
    help_text = run([emulator, "--help"], timeout=60, cwd=work, env=env)
    if "--port" not in help_text or "--api-key" not in help_text:
        raise CheckError(f"wavespeed-emulator --help:\n{help_text}")
    cmd = [emulator, "--host", "127.0.0.1", "--port", "0", "--api-key", EMULATOR_KEY]
    cmd += ["--balance", str(EMULATOR_BALANCE)]
    stderr_path = work / "emulator.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True
        )
    try:
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
        url, deadline = None, time.monotonic() + 60
        while url is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise CheckError(f"no banner from wavespeed-emulator within 60 s\n{stderr_path.read_text()}") from None
            if line is None:
                proc.wait(timeout=10)
                raise CheckError(f"wavespeed-emulator exited {proc.returncode}\n{stderr_path.read_text()}")
            if match := BANNER.search(line):
                url = match.group(1)
        parts = urlsplit(url)
        if parts.hostname != "127.0.0.1" or not parts.port:
            raise CheckError(f"wavespeed-emulator listens on {url}, expected 127.0.0.1 and a real port")
        request = urllib.request.Request(f"{url}/api/v3/balance", headers={"Authorization": f"Bearer {EMULATOR_KEY}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        try:
            with opener.open(request, timeout=10) as response:
                body = json.loads(response.read())
        except OSError as exc:  # URLError, HTTPError (a 401 here), timeouts
            raise CheckError(f"GET {url}/api/v3/balance: {exc}\n{stderr_path.read_text()}") from None
        if body.get("data") != {"balance": EMULATOR_BALANCE}:
            raise CheckError(f"GET {url}/api/v3/balance: {body}")
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise CheckError("wavespeed-emulator did not stop within 20 s of SIGTERM") from None
        if code != 0:
            raise CheckError(f"wavespeed-emulator exited {code} on SIGTERM\n{stderr_path.read_text()}")
        log(f"wavespeed-emulator on {url}: GET /api/v3/balance -> {body['data']}; stopped, exit 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def scratch_base() -> str | None:
    """/dev/shm when TMPDIR is not set and it is an exec-able tmpfs with room: the venv's 10,000 files are
    written and removed there in a fraction of the time a disk takes (20-25 s less on a loaded 2-core box)."""
    shm = "/dev/shm"
    if "TMPDIR" in os.environ or not os.path.isdir(shm) or not os.access(shm, os.W_OK | os.X_OK):
        return None
    stat = os.statvfs(shm)
    if stat.f_flag & os.ST_NOEXEC or stat.f_bavail * stat.f_frsize < 2 * 1024**3:
        return None
    return shm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dist", type=Path, help="build into this folder (emptied first) instead of a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (venv, AIRFLOW_HOME)")
    parser.add_argument("--tmp", help="where the temporary folder goes (default: /dev/shm if usable, else TMPDIR)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="wavespeed-wheel-check-", dir=args.tmp or scratch_base()))
    dist = args.dist.resolve() if args.dist else work / "dist"
    if args.dist:
        shutil.rmtree(dist, ignore_errors=True)
    version = source_version()
    started = time.monotonic()

    def step(name: str) -> None:
        log(f"{time.monotonic() - started:6.1f} s  {name}")

    try:
        step("python -m build (sdist, wheel from it), twine check --strict")
        wheel, sdist = build(dist, work)
        check_wheel_contents(wheel, version)
        summarize_sdist(sdist)
        step("clean venv, pip install the wheel -c constraints-dev.txt")
        venv = install(wheel, work)
        env = clean_env(work)
        step("imports, airflow providers get/hooks")
        check_imports(venv, work, env)
        check_provider(venv, work, env, version)
        step("wavespeed-emulator --help, start on 127.0.0.1, GET /api/v3/balance, SIGTERM")
        check_emulator(venv, work, env)
        step(f"OK: {wheel.name} and {sdist.name}")
        return 0
    except CheckError as exc:
        step(f"FAILED: {exc}")
        return 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            step(f"removed {work}")


if __name__ == "__main__":
    sys.exit(main())
