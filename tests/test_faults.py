"""Nothing finished is lost: a benchmark SIGKILLed at random moments, then rerun, ends exactly as an uninterrupted one.

A fault-injection point (kemdy_adapters/faults.py) pauses inside every Trainer checkpoint, between a task export's
weights and its config, and before each JSON file is renamed into place, so that many kills land mid-write.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

KILLS = 5


def comparable(path) -> dict:
    """results.json without what legitimately differs between runs: timings, paths, environment."""
    results = json.loads(path.read_text())
    for data in results["strategies"].values():
        data.pop("train_seconds")
    return {key: results[key] for key in ("tasks", "orders", "strategies", "comparisons", "progress")}


def test_random_kills_lose_nothing(tiny_checkpoints, sample_corpus, hf_cache, tmp_path, capsys):
    text, speech = tiny_checkpoints

    def command(output):
        config = {"output_dir": str(output), "data_dir": str(sample_corpus), "text_model": text,
                  "speech_model": speech, "strategies": ["finetune"], "folds": [0], "orders": ["kemdy19,kemdy20"],
                  "num_train_epochs": 2, "learning_rate": 5e-3, "projector_size": 16, "max_speech_seconds": 2,
                  "dataset_cache_dir": hf_cache, "disable_tqdm": True, "floors": False, "figures": False,
                  "seed": 5}
        path = output.parent / f"{output.name}.json"
        path.write_text(json.dumps(config))
        return [sys.executable, "-m", "kemdy_adapters.cli", "benchmark", str(path)]

    plain = {key: value for key, value in os.environ.items() if key != "KEMDY_ADAPTERS_FAULT_PAUSE"}
    env = {**plain, "KEMDY_ADAPTERS_FAULT_PAUSE": "0.3"}
    reference = tmp_path / "uninterrupted"
    started = time.time()
    subprocess.run(command(reference), env=env, check=True, capture_output=True)
    duration = time.time() - started
    expected = comparable(reference / "results.json")

    rng = random.Random(2026)
    killed = 0
    for attempt in range(KILLS):
        output = tmp_path / f"killed{attempt}"
        process = subprocess.Popen(command(output), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3 * duration, 0.95 * duration))  # past the imports, into the training
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait()
        # The rerun needs no pauses: it only has to finish what the killed run left, from whatever it left.
        rerun = subprocess.run(command(output), env=plain, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
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
