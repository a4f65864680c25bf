#!/usr/bin/env python3
"""Share adapters, not data: three institutions, one model that serves all their tasks.

    python examples/share_adapters.py [--workdir runs/share] [--scale demo|tiny]

1. A learns KEMDy19 (its own corpus) and prepares its task folder for the Hub (`push --dry-run`).
2. B, in its own folder with no access to A's corpus, receives A's task by repo id and learns KEMDy20.
3. C receives both and learns a third corpus in the generic layout (`clinic`: metadata.csv beside the audio,
   4 labels of its own, about a fifth of its utterances untranscribed).
4. One recognizer loads the three tasks by repo id and classifies utterances of all three corpora, routing each
   to a task's adapters itself.

No machine here reaches the Hub, so "upload, then download" is played by `hub.add_to_cache`: the prepared
folder is placed in a local Hugging Face cache exactly as a download leaves it, and every later step resolves
the repo id offline from that cache (`HF_HUB_OFFLINE=1`), through the same code path as a real download. With
Hub access, replace that step by `kemdy-adapters push ... ` (without --dry-run) and drop `HF_HUB_CACHE`.

Everything runs through the `kemdy-adapters` command line; the script checks what the workflow promises and
writes `summary.json`: every step's exit code and files, that each received task's logits are bit-identical to
its sender's, the chain's 3 x 3 score matrix (row i: the model holding the tasks published up to institution i,
scored on every corpus's test utterances with the task id given; earlier entries must not move), routing
accuracy over the three tasks, and the bytes shared per task. Exit code 0 when every check
holds. `--scale tiny` (the test) uses tiny random encoders and 2 epochs; `demo` the demo's pretrained encoders.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPOS = {"kemdy19": "inst-a/kemdy19-adapter", "kemdy20": "inst-b/kemdy20-adapter", "clinic": "inst-c/clinic-adapter"}
SETTINGS = {
    "tiny": ["--num_train_epochs", "2", "--learning_rate", "5e-3", "--projector_size", "16"],
    # the demo's recipe: its epochs, and the learning rate its tuning rule chose for `adapter`
    "demo": ["--num_train_epochs", "9", "--learning_rate", "1e-2", "--projector_size", "32",
             "--adapter_reduction_factor", "4", "--per_device_train_batch_size", "16"],
}
COMMON = ["--max_speech_seconds", "2", "--disable_tqdm", "true", "--use_cpu", "true", "--seed", "0"]


def say(message: str) -> None:
    print(f"[share] {message}", flush=True)


class Workflow:
    def __init__(self, workdir: Path, scale: str):
        self.root = workdir
        self.scale = scale
        self.steps: list[dict] = []
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                    "HF_HUB_CACHE": str(workdir / "hub_cache"), "TOKENIZERS_PARALLELISM": "false"}

    def cli(self, name: str, *args: str, cwd: Path) -> None:
        """One `kemdy-adapters` command, run in an institution's own folder; its output goes to logs/."""
        cwd.mkdir(parents=True, exist_ok=True)
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        started = time.time()
        with open(log, "w", encoding="utf-8") as stream:
            code = subprocess.run([sys.executable, "-m", "kemdy_adapters.cli", *args], cwd=cwd, env=self.env,
                                  stdout=stream, stderr=subprocess.STDOUT).returncode
        self.steps.append({"step": name, "exit_code": code, "seconds": round(time.time() - started, 1),
                           "log": str(log.relative_to(self.root))})
        say(f"{name}: exit {code} in {time.time() - started:.0f} s (log: {log.relative_to(self.root)})")
        if code != 0:
            raise SystemExit(f"[share] step {name} failed; see {log}")

    def publish(self, task: str, folder: Path) -> None:
        """Stands in for `push` + a receiver's download: the prepared folder lands in the Hugging Face cache."""
        from kemdy_adapters.hub import add_to_cache

        add_to_cache(folder, REPOS[task], self.root / "hub_cache")
        say(f"published {folder.relative_to(self.root)} as {REPOS[task]} (local Hugging Face cache)")

    # ------------------------------------------------------------------------------------------------- steps
    def prepare(self) -> tuple[Path, Path]:
        """The three corpora, each moved into its own institution's folder, and the shared base encoders."""
        from kemdy_adapters.sample_corpus import write_generic_corpus, write_sample_corpus

        world = self.root / "generated"
        write_sample_corpus(world)
        write_generic_corpus(world / "clinic", utterances=12 if self.scale == "tiny" else 24)
        for institution, name in (("a", "KEMDy19"), ("b", "KEMDy20_v1_1"), ("c", "clinic")):
            (self.root / institution / "data").mkdir(parents=True, exist_ok=True)
            shutil.move(str(world / name), str(self.root / institution / "data" / name))
        shutil.rmtree(world)
        encoders = self.root / "encoders"
        if self.scale == "tiny":
            from kemdy_adapters.tiny import save_tiny_encoders

            texts = [path.read_text(encoding=encoding, errors="ignore")
                     for root, encoding in ((self.root / "a" / "data", "utf-8"), (self.root / "b" / "data", "cp949"))
                     for path in sorted(root.rglob("*.txt"))]
            return save_tiny_encoders(encoders, texts)
        from kemdy_adapters.pretrain import demo_encoders

        return demo_encoders(encoders)  # the demo's pretrained pair, shipped in the package

    def train(self, institution: str, task_args: list[str], received: list[str], encoders) -> None:
        text, speech = encoders
        folder = self.root / institution
        self.cli(f"{institution}-train", "train", "--strategy", "adapter", *task_args,
                 *(["--from_tasks", *received] if received else []), "--text_model", str(text), "--speech_model",
                 str(speech), "--output_dir", "run", "--dataset_cache_dir", str(self.root / "hf_cache"),
                 *SETTINGS[self.scale], *COMMON, cwd=folder)

    def push(self, institution: str, task: str) -> Path:
        folder = self.root / institution
        self.cli(f"{institution}-push", "push", "--task", task, "--from", "run", "--repo-id", REPOS[task],
                 "--dry-run", "--to-dir", "push", cwd=folder)
        self.publish(task, folder / "push")
        return folder / "push"

    def serve(self) -> list[dict]:
        """Test utterances of all three corpora (fold 0's held-out groups), classified by one routed model."""
        import logging

        import datasets

        from kemdy_adapters.tasks import TaskSpec, task_splits

        # The corpora's scan reports were shown when A and B trained (logs/a-train.log, logs/b-train.log).
        logging.getLogger("kemdy_adapters.corpus").setLevel(logging.ERROR)
        datasets.disable_progress_bars()

        specs = [TaskSpec.kemdy("kemdy19", self.root / "a" / "data"),
                 TaskSpec.kemdy("kemdy20", self.root / "b" / "data"),
                 TaskSpec.from_folder("clinic", self.root / "c" / "data" / "clinic")]
        rows = []
        for spec in specs:
            dataset = spec.load(cache_dir=str(self.root / "hf_cache")).cast_column("audio",
                                                                                   datasets.Audio(decode=False))
            test = task_splits(dataset, 0)["test"]
            names = dataset.features["label"].names
            for row in test.select(range(min(len(test), 24))):
                rows.append({"id": f"{spec.name}:{row['id']}", "audio": row["audio"]["path"], "text": row["text"],
                             "task": spec.name, "label": names[row["label"]]})
        manifest = self.root / "serve" / "utterances.csv"
        manifest.parent.mkdir(exist_ok=True)
        with open(manifest, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=["id", "audio", "text"])  # no task column: route
            writer.writeheader()
            writer.writerows({key: row[key] for key in ("id", "audio", "text")} for row in rows)
        self.cli("serve-predict", "predict", "--task", *REPOS.values(), "--manifest", str(manifest), "--output",
                 "predictions.jsonl", cwd=self.root / "serve")
        predictions = {record["id"]: record for record in map(
            json.loads, (self.root / "serve" / "predictions.jsonl").read_text(encoding="utf-8").splitlines())}
        for row in rows:
            row["prediction"] = predictions[row["id"]]
        return rows

    def score_chain(self, rows: list[dict]) -> dict:
        """The chain's score matrix: R[i][j] is the score on corpus j's test utterances (task id given) of the
        model that holds the tasks published up to institution i. Received tasks are frozen, so R[i][j] must
        equal R[j][j] exactly."""
        from kemdy_adapters.inference import EmotionRecognizer
        from kemdy_adapters.metrics import METRICS, classification_scores

        tasks = list(REPOS)
        matrix = {metric: [] for metric in METRICS}
        for i in range(len(tasks)):
            recognizer = EmotionRecognizer.from_pretrained([REPOS[task] for task in tasks[: i + 1]],
                                                           cache_dir=self.root / "hub_cache")
            row = {metric: [] for metric in METRICS}
            for j, task in enumerate(tasks):
                scores = None
                if j <= i:
                    mine = [item for item in rows if item["task"] == task]
                    labels = recognizer.model.task_labels(task)
                    predicted = [int(recognizer.logits(item["audio"], item["text"] or None, task=task).argmax())
                                 for item in mine]
                    scores = classification_scores(predicted, [labels.index(item["label"]) for item in mine])
                for metric in METRICS:
                    row[metric].append(None if scores is None else scores[metric])
            for metric in METRICS:
                matrix[metric].append(row[metric])
        return {"order": tasks, "matrix": matrix}

    def check_received_logits(self, rows: list[dict]) -> dict:
        """Each received task scores exactly as at its sender: the sender's own export, loaded alone, against
        the served model holding all three tasks by repo id."""
        import torch

        from kemdy_adapters.inference import EmotionRecognizer

        served = EmotionRecognizer.from_pretrained(list(REPOS.values()), cache_dir=self.root / "hub_cache")
        checks = {}
        senders = {"kemdy19": self.root / "a" / "run" / "kemdy19" / "export",
                   "kemdy20": self.root / "b" / "run" / "kemdy20" / "export"}
        for task, export in senders.items():
            alone = EmotionRecognizer.from_pretrained(export)
            utterances = [row for row in rows if row["task"] == task][:8]
            checks[task] = all(torch.equal(alone.logits(row["audio"], row["text"] or None, task=task),
                                           served.logits(row["audio"], row["text"] or None, task=task))
                               for row in utterances)
        return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/share", help="folder for everything (default: runs/share)")
    parser.add_argument("--scale", choices=sorted(SETTINGS), default="demo")
    parser.add_argument("--overwrite", action="store_true", help="remove the workdir first")
    args = parser.parse_args(argv)
    root = Path(args.workdir).resolve()
    if root.exists() and any(root.iterdir()):
        if not args.overwrite:
            print(f"[share] {root} exists; pass --overwrite to start over", file=sys.stderr)
            return 2
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    flow = Workflow(root, args.scale)
    started = time.time()
    say(f"writing the three corpora into separate institution folders under {root}")
    encoders = flow.prepare()

    say("A learns KEMDy19 and prepares its task folder")
    flow.train("a", ["--tasks", "kemdy19", "--kemdy19_dir", "data/KEMDy19"], [], encoders)
    shared = {"kemdy19": flow.push("a", "kemdy19")}
    say("B receives A's task by repo id and learns KEMDy20 (it never sees KEMDy19)")
    flow.train("b", ["--tasks", "kemdy20", "--kemdy20_dir", "data/KEMDy20_v1_1"], [REPOS["kemdy19"]], encoders)
    shared["kemdy20"] = flow.push("b", "kemdy20")
    say("C receives both and learns its own corpus in the generic layout")
    flow.train("c", ["--tasks", "clinic=data/clinic"], [REPOS["kemdy19"], REPOS["kemdy20"]], encoders)
    shared["clinic"] = flow.push("c", "clinic")

    say("one model serves all three tasks, routing each utterance itself")
    rows = flow.serve()
    classified = [row for row in rows if "error" not in row["prediction"]]
    routing = {task: sum(row["prediction"]["task"] == task for row in classified if row["task"] == task)
               / max(1, sum(row["task"] == task for row in classified)) for task in REPOS}
    overall = sum(row["prediction"]["task"] == row["task"] for row in classified) / max(1, len(classified))
    correct = {task: sum(row["prediction"].get("emotion") == row["label"] for row in classified if row["task"] == task)
               / max(1, sum(row["task"] == task for row in classified)) for task in REPOS}
    identical = flow.check_received_logits(rows)
    chain = flow.score_chain(rows)
    kept = all(row[j] == chain["matrix"]["macro_f1"][j][j] for row in chain["matrix"]["macro_f1"]
               for j in range(len(row)) if row[j] is not None)
    runs = {institution: json.loads((root / institution / "run" / "results.json").read_text(encoding="utf-8"))
            for institution in "abc"}
    summary = {
        "scale": args.scale,
        "seconds": round(time.time() - started, 1),
        "steps": flow.steps,
        "shared_files": {task: sorted(path.name for path in folder.iterdir()) for task, folder in shared.items()},
        "shared_bytes": {task: sum(path.stat().st_size for path in folder.iterdir())
                         for task, folder in shared.items()},
        "received": {institution: [item["task"] for item in run["received"]] for institution, run in runs.items()},
        "score_matrices": {institution: {"order": run["order"], "macro_f1": run["matrix"]["macro_f1"]}
                           for institution, run in runs.items()},
        "received_logits_bit_identical": identical,
        "chain_matrix": chain,
        "chain_earlier_tasks_unchanged": kept,
        "routing_accuracy": {"overall": overall, **routing},
        "routed_accuracy_of_emotions": correct,
        "utterances": len(rows),
        "errors": len(rows) - len(classified),
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    say("shared per task: " + ", ".join(f"{task} {size / 1e6:.3f} MB"
                                        for task, size in summary["shared_bytes"].items()))
    say(f"received logits bit-identical to the senders': {identical}")
    say(f"routing accuracy over 3 tasks: {overall:.3f} (chance 0.333); per task "
        + ", ".join(f"{task} {value:.3f}" for task, value in routing.items()))
    say("score matrix along the chain (macro F1; row i: the tasks published up to institution i, task id "
        "given; columns " + ", ".join(chain["order"]) + "):")
    for name, row in zip("ABC", chain["matrix"]["macro_f1"]):
        say(f"  after {name}: " + "  ".join("    -" if value is None else f"{value:.3f}" for value in row))
    say(f"earlier tasks' scores unchanged along the chain: {kept}")
    say(f"finished in {summary['seconds']:.0f} s; summary: {root / 'summary.json'}")
    return 0 if all(identical.values()) and kept and not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
