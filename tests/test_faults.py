"""Nothing finished is lost: a benchmark SIGKILLed at random moments, then rerun, ends exactly as an uninterrupted one.

A fault-injection point (kemdy_adapters/faults.py) pauses inside every Trainer checkpoint, between a task export's
weights and its config, and before each JSON file is renamed into place, so that many kills land mid-write.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from multiprocessing import forkserver

from kemdy_adapters.faults import ENVIRONMENT

KILLS = 5
PRELOADED = ("kemdy_adapters.cli", "kemdy_adapters.benchmark")
"""Imported once, in the fork server that every benchmark of the test is forked from: the runs then skip the ~15 s
of imports (torch, transformers, datasets, sklearn) a fresh `python -m kemdy_adapters.cli` pays, and are killed
during their own work."""


def run_benchmark(config_path, log_path, pause: str | None) -> None:
    """`kemdy-adapters benchmark CONFIG`, as the command line runs it, with `pause` seconds at every fault point
    (None: none) and its output in `log_path`."""
    os.environ.pop(ENVIRONMENT, None)
    if pause:
        os.environ[ENVIRONMENT] = pause
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    from kemdy_adapters.cli import main

    sys.exit(main(["benchmark", str(config_path)]))


def benchmark_process(config_path, log_path, pause: str | None = None) -> multiprocessing.Process:
    """`run_benchmark` in a process of its own, forked from a server that has imported `PRELOADED`."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOADED))
    forkserver.ensure_running()  # the imports happen here, once, not inside the first run
    return context.Process(target=run_benchmark, args=(config_path, log_path, pause))


def comparable(path) -> dict:
    """results.json without what legitimately differs between runs: timings, paths, environment."""
    results = json.loads(path.read_text())
    for data in results["strategies"].values():
        data.pop("train_seconds")
    return {key: results[key] for key in ("tasks", "orders", "strategies", "comparisons", "progress")}


def test_random_kills_lose_nothing(tiny_checkpoints, sample_corpus, hf_cache, tmp_path, capsys):
    text, speech = tiny_checkpoints

    def config(output):
        path = output.parent / f"{output.name}.json"
        path.write_text(json.dumps({
            "output_dir": str(output), "data_dir": str(sample_corpus), "text_model": text, "speech_model": speech,
            "strategies": ["finetune"], "folds": [0], "orders": ["kemdy19,kemdy20"], "num_train_epochs": 2,
            "learning_rate": 5e-3, "projector_size": 16, "max_speech_seconds": 2, "dataset_cache_dir": hf_cache,
            "disable_tqdm": True, "floors": False, "figures": False, "seed": 5}))
        return path

    def finish(process, log):
        process.join()
        assert process.exitcode == 0, log.read_text()[-3000:]

    # Two uninterrupted runs: the first also fills the datasets cache, which the killed runs then read, so the
    # second gives their duration (and must end with the same results).
    durations, results = [], []
    for name in ("uninterrupted", "uninterrupted_again"):
        process = benchmark_process(config(tmp_path / name), tmp_path / f"{name}.log", "0.3")
        started = time.time()
        process.start()
        finish(process, tmp_path / f"{name}.log")
        durations.append(time.time() - started)
        results.append(comparable(tmp_path / name / "results.json"))
    assert results[0] == results[1]
    expected, duration = results[0], durations[1]

    rng = random.Random(2026)
    killed = 0
    for attempt in range(KILLS):
        output, log = tmp_path / f"killed{attempt}", tmp_path / f"killed{attempt}.log"
        process = benchmark_process(config(output), log, "0.3")
        process.start()
        time.sleep(rng.uniform(0.3 * duration, 0.95 * duration))  # into the run's own work
        if process.is_alive():
            process.kill()  # SIGKILL
            killed += 1
        process.join()
        # The rerun needs no pauses: it only has to finish what the killed run left, from whatever it left.
        rerun = benchmark_process(config(output), log)
        rerun.start()
        finish(rerun, log)
        assert comparable(output / "results.json") == expected, f"attempt {attempt}"
    with capsys.disabled():
        print(f"\n[fault injection] survived {killed} of {KILLS} SIGKILLs at random moments "
              f"(uninterrupted run {duration:.0f} s); every rerun ended with the uninterrupted results")
    assert killed >= KILLS // 2


def test_workers_die_with_the_benchmark(tmp_path):
    """A benchmark's worker processes (`--cell_processes`) end at once when it is killed, mid-job or starting up,
    so that nothing still writes into its folder when it is run again."""
    script = tmp_path / "pool.py"
    script.write_text(
        "import os, sys, time\n"
        "from kemdy_adapters.workers import WorkerPool\n"
        "def report(path):\n"
        "    open(path, 'a').write(f'{os.getpid()}\\n')\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    with WorkerPool(2, print, ()) as pool:\n"
        "        pool.run([(sys.argv[1],), (sys.argv[1],)], report, lambda job: None, lambda job: None)\n")
    pids = tmp_path / "pids"
    process = subprocess.Popen([sys.executable, str(script), str(pids)], stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(pid) for pid in pids.read_text().split()]
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 3
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc: os.kill said it exists
