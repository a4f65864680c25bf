"""Floors beside every score: what a test set gives without learning, and a simple field-standard baseline.

Per task and fold, on the same train / validation / test split as the neural models:
- `majority`: always the most frequent training label;
- `chance`: uniformly random labels (expected scores, averaged over 200 seeded draws);
- `linear_audio`: the 88 eGeMAPS functionals (openSMILE, `eGeMAPSv02`) of the speech, cropped as the neural
  models crop it, standardised, into a class-weighted logistic regression;
- `linear_text`: character 1-3-gram TF-IDF of the transcript into a class-weighted logistic regression;
- `linear`: the two late-fused (a weighted mean of their class probabilities, the text weight chosen from
  0, 0.25, 0.5, 0.75, 1 on the validation split; audio alone for untranscribed utterances).
Class weights are inverse class frequencies, as the neural models' class-balanced sampling. The regularisation
strength C is chosen from (0.1, 1, 10) on the validation split by macro F1, the rule the neural strategies are
tuned by. On real corpora the baseline shows how far the encoders get beyond hand-made features; on generated
data it shows whether a neural model learned at all.

For valence and arousal (`dimension_floor_scores`), on the same splits:
- `training_mean`: the training split's mean of each dimension, predicted for every test utterance (CCC 0 and
  r 0 by construction; its RMSE is the spread of the test scores around it);
- `linear`: ridge regression on the standardised eGeMAPS functionals beside the transcript's character 1-3-gram
  TF-IDF (one model per dimension), alpha chosen from (0.1, 1, 10, 100) on the validation split by CCC,
  predictions clipped to the 1-5 scale.
"""

from __future__ import annotations

import logging

import numpy as np

from .hf_dataset import decode_audio
from .metrics import DIMENSIONS, METRICS, classification_scores, concordance, dimension_scores

logger = logging.getLogger(__name__)

FLOORS = ("majority", "chance", "linear_audio", "linear_text", "linear")
C_GRID = (0.1, 1.0, 10.0)
DIMENSION_FLOORS = ("training_mean", "linear")
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0)
FUSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
_EGEMAPS_CACHE: dict[tuple, np.ndarray] = {}


def egemaps(arrays: list[np.ndarray], keys: list[tuple], sampling_rate: int = 16000) -> np.ndarray:
    """(N, 88) eGeMAPS functionals, computed once per key (utterance and crop) in this process."""
    import opensmile

    smile = None
    rows = []
    for array, key in zip(arrays, keys):
        if key not in _EGEMAPS_CACHE:
            if smile is None:
                smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                        feature_level=opensmile.FeatureLevel.Functionals)
            values = smile.process_signal(np.asarray(array, dtype=np.float32), sampling_rate).to_numpy()[0]
            _EGEMAPS_CACHE[key] = np.nan_to_num(values.astype(np.float64))
        rows.append(_EGEMAPS_CACHE[key])
    return np.stack(rows)


def floor_inputs(splits: dict, crop_seconds: float, where: str) -> dict:
    """What every floor reads of each split (`splits`: train/validation/test datasets with `id, label, text,
    audio` and optionally `valence, arousal`), the audio decoded and its eGeMAPS computed once."""
    crop = int(crop_seconds * 16000)
    return {name: _split_inputs(split, crop, where) for name, split in splits.items()}


def _split_inputs(split, crop_samples: int, where: str) -> dict:
    audio = [np.asarray(decode_audio(row)["array"], dtype=np.float32)[:crop_samples] for row in split["audio"]]
    return {
        "audio": egemaps(audio, [(where, identifier, crop_samples) for identifier in split["id"]]),
        "text": [text or "" for text in split["text"]],
        "labels": np.asarray(split["label"]),
        "dimensions": (np.stack([np.asarray(split[name], dtype=np.float64) for name in DIMENSIONS], 1)
                       if all(name in split.column_names for name in DIMENSIONS) else None),
    }


def _fit_select(make, train_x, train_y, validation_x, validation_y):
    """The model of the C grid with the best validation macro F1 (ties: the smaller C)."""
    best, best_score = None, -1.0
    for c in C_GRID:
        model = make(c).fit(train_x, train_y)
        score = classification_scores(model.predict(validation_x), validation_y)["macro_f1"]
        if score > best_score:
            best, best_score = model, score
    return best


def _proba(model, x, num_labels: int) -> np.ndarray:
    """Class probabilities in label-id order (columns for classes unseen in training are 0)."""
    out = np.zeros((len(x) if not hasattr(x, "shape") else x.shape[0], num_labels))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def _fuse(audio: np.ndarray, text: np.ndarray, has_text: np.ndarray, weight: float) -> np.ndarray:
    """`(1 - weight) * audio + weight * text` probabilities; audio alone for untranscribed utterances."""
    return np.where(has_text[:, None], (1 - weight) * audio + weight * text, audio)


def floor_scores(data: dict, num_labels: int, seed: int = 0) -> dict:
    """Test-set scores of every floor for one task and fold (`data`: `floor_inputs` of its splits)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, validation, test = data["train"], data["validation"], data["test"]
    references = test["labels"]
    scores = {}
    majority = np.bincount(train["labels"], minlength=num_labels).argmax()
    scores["majority"] = classification_scores(np.full(len(references), majority), references)
    rng = np.random.default_rng(seed)
    draws = [classification_scores(rng.integers(0, num_labels, len(references)), references) for _ in range(200)]
    scores["chance"] = {metric: float(np.mean([draw[metric] for draw in draws])) for metric in draws[0]}

    def audio_model(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000))

    audio = _fit_select(audio_model, train["audio"], train["labels"], validation["audio"], validation["labels"])
    audio_probability = _proba(audio, test["audio"], num_labels)
    scores["linear_audio"] = classification_scores(audio_probability.argmax(1), references)
    transcribed = {name: np.array([bool(text.strip()) for text in split["text"]]) for name, split in data.items()}
    fused = audio_probability.copy()
    if transcribed["train"].sum() >= 2 and len(set(train["labels"][transcribed["train"]])) > 1:
        def text_model(c):
            return make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)),
                                 LogisticRegression(C=c, class_weight="balanced", max_iter=2000))

        keep = {name: transcribed[name] for name in data}
        text = _fit_select(text_model, [t for t, k in zip(train["text"], keep["train"]) if k],
                           train["labels"][keep["train"]], validation["text"], validation["labels"])
        text_probability = _proba(text, test["text"], num_labels)
        scores["linear_text"] = classification_scores(text_probability.argmax(1), references)
        # The two are calibrated differently (a strongly regularised TF-IDF model gives flat probabilities), so
        # the text weight of the fusion is chosen on the validation split too.
        validation_audio = _proba(audio, validation["audio"], num_labels)
        validation_text = _proba(text, validation["text"], num_labels)
        weight = max(FUSION_WEIGHTS, key=lambda w: classification_scores(
            _fuse(validation_audio, validation_text, keep["validation"], w).argmax(1), validation["labels"]
        )["macro_f1"])
        fused = _fuse(audio_probability, text_probability, keep["test"], weight)
    else:
        scores["linear_text"] = None  # a speech-only task has no text baseline
    scores["linear"] = classification_scores(fused.argmax(1), references)
    return {name: ({metric: value[metric] for metric in METRICS} if value else None) for name, value in scores.items()}


def dimension_floor_scores(data: dict) -> dict | None:
    """Test-set valence/arousal scores (`dimension_scores`) of the dimensional floors for one task and fold
    (`data`: `floor_inputs` of its splits); None when the task's data has no valence/arousal."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    if any(part["dimensions"] is None for part in data.values()):
        return None
    train, validation, test = data["train"], data["validation"], data["test"]
    mean = train["dimensions"].mean(0)
    scores = {"training_mean": dimension_scores(np.tile(mean, (len(test["dimensions"]), 1)), test["dimensions"])}
    scaler = StandardScaler().fit(train["audio"])
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).fit([t or " " for t in train["text"]])

    def features(part):
        return hstack([csr_matrix(np.nan_to_num(scaler.transform(part["audio"]))),
                       vectorizer.transform(part["text"])]).tocsr()

    x = {name: features(part) for name, part in data.items()}
    predictions = np.zeros_like(test["dimensions"])
    for k in range(len(DIMENSIONS)):
        best = max(ALPHA_GRID, key=lambda alpha: concordance(
            Ridge(alpha=alpha).fit(x["train"], train["dimensions"][:, k]).predict(x["validation"]),
            validation["dimensions"][:, k]))
        model = Ridge(alpha=best).fit(x["train"], train["dimensions"][:, k])
        predictions[:, k] = np.clip(model.predict(x["test"]), 1.0, 5.0)
    scores["linear"] = dimension_scores(predictions, test["dimensions"])
    return scores
