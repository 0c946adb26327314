"""The three virtualenvs of the comparison, built with ``python -m venv`` + pip, or reused.

They live under ``<repo>/.bench-envs/`` (``daffi2``, ``daffi3``, ``ours``), next to a small
``_pythonpath/`` directory holding one symlink, ``benchmarks -> <repo>/benchmarks``: the
drivers run with that directory as ``PYTHONPATH`` and a temp dir as their working directory,
so ``benchmarks.compare`` is importable everywhere while the repository's ``daffi`` is not (the
daffi 2 and daffi 3 venvs must import their own). ``ours`` has this repository installed
editable, so it always runs the current source.

A venv is reused when its ``bench-env.json`` matches what would be built now (requirements,
Python version, and for ``ours`` the hash of ``pyproject.toml``) and its ``daffi`` imports;
otherwise it is rebuilt from scratch. ``python -m benchmarks.compare.envs`` builds or checks
them all and prints what each holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".bench-envs"
MARKER = "bench-env.json"
PIP_TIMEOUT = 900.0


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What one venv holds."""

    name: str
    requirements: tuple[str, ...]
    #: ``pip install -e '<repo>[trio]'`` (our daffi, with the dependencies from pyproject.toml
    #: and the trio extra)
    editable: bool = False


SPECS: dict[str, EnvSpec] = {
    # daffi 2 imports sniffio without declaring it, and needs anyio 3 (and a trio of its time).
    "daffi2": EnvSpec("daffi2", ("daffi==2.2.1", "anyio<4", "sniffio", "trio<0.23")),
    "daffi3": EnvSpec("daffi3", ("daffi==3.0.1",)),
    "ours": EnvSpec("ours", (), editable=True),
}


@dataclasses.dataclass(frozen=True)
class Env:
    """A ready venv."""

    name: str
    path: Path
    python: Path
    reused: bool
    seconds: float
    #: ``pip freeze`` of the venv (the editable line shortened)
    packages: tuple[str, ...]


def pythonpath_dir(cache: Path = CACHE) -> Path:
    """The directory to put on the drivers' ``PYTHONPATH`` (``benchmarks`` only, no ``daffi``)."""
    shim = cache / "_pythonpath"
    link = shim / "benchmarks"
    target = ROOT / "benchmarks"
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        shim.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return shim


def _fingerprint(spec: EnvSpec) -> dict[str, object]:
    fp = {
        "requirements": list(spec.requirements),
        "editable": str(ROOT) if spec.editable else None,
        "python": platform.python_version(),
        "base_python": sys.base_prefix,
    }
    if spec.editable:
        fp["pyproject_sha256"] = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return fp


def _python_of(path: Path) -> Path:
    return path / "bin" / "python"


def _imports_daffi(python: Path) -> bool:
    try:
        done = subprocess.run(
            [str(python), "-c", "import daffi"],
            cwd="/",
            env=_clean_env(),
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


#: environment variables the venvs' processes must not inherit. PYTHONDONTWRITEBYTECODE
#: too: without cached bytecode every process would compile its imports again (in ``ours``,
#: the repository's daffi is not compiled by pip), which would skew the start-up figures.
UNSET = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in UNSET:
        env.pop(name, None)
    return env


def _run_logged(cmd: list[str], log: Path, what: str) -> None:
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        try:
            done = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=_clean_env(),
                timeout=PIP_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"{what}: no answer within {PIP_TIMEOUT:.0f} s (see {log})"
            ) from None
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
        raise RuntimeError(
            f"{what} failed (exit {done.returncode}, see {log}):\n" + "\n".join(tail)
        )


def _freeze(python: Path) -> tuple[str, ...]:
    done = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        cwd="/",
        env=_clean_env(),
        timeout=120,
    )
    lines = []
    for line in done.stdout.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("-e "):
            line = "daffi (editable: " + line.rsplit("#egg=", 1)[0][3:] + ")"
        lines.append(line)
    return tuple(lines)


def ensure(spec: EnvSpec, cache: Path = CACHE, *, rebuild: bool = False) -> Env:
    """The venv for ``spec``: reused if it matches, else built (pip output in ``<name>.log``)."""
    started = time.monotonic()
    path = cache / spec.name
    python = _python_of(path)
    marker = path / MARKER
    wanted = _fingerprint(spec)
    if not rebuild and marker.is_file() and python.exists():
        try:
            have = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            have = None
        if have is not None and have.get("fingerprint") == wanted and _imports_daffi(python):
            return Env(
                spec.name,
                path,
                python,
                True,
                time.monotonic() - started,
                tuple(have.get("packages", ())),
            )
    cache.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.rmtree(path)
    log = cache / f"{spec.name}.log"
    log.write_text("", encoding="utf-8")
    _run_logged([sys.executable, "-m", "venv", str(path)], log, f"creating venv {spec.name}")
    install = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if spec.editable:
        install += ["-e", f"{ROOT}[trio]"]  # ours runs on trio too: trio is an extra
    install += list(spec.requirements)
    _run_logged(install, log, f"pip install in venv {spec.name}")
    if not _imports_daffi(python):
        raise RuntimeError(f"venv {spec.name}: `import daffi` fails after installing (see {log})")
    packages = _freeze(python)
    marker.write_text(
        json.dumps({"fingerprint": wanted, "packages": list(packages)}, indent=1), encoding="utf-8"
    )
    return Env(spec.name, path, python, False, time.monotonic() - started, packages)


def ensure_all(
    cache: Path = CACHE, *, rebuild: bool = False, names: tuple[str, ...] = ()
) -> dict[str, Env]:
    return {
        name: ensure(spec, cache, rebuild=rebuild)
        for name, spec in SPECS.items()
        if not names or name in names
    }


def main() -> None:
    pythonpath_dir()
    for env in ensure_all(rebuild="--rebuild" in sys.argv[1:]).values():
        state = "reused" if env.reused else "built"
        print(f"{env.name}: {state} in {env.seconds:.1f} s at {env.path}")
        for line in env.packages:
            print(f"    {line}")


if __name__ == "__main__":
    main()
