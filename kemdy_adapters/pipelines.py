"""`transformers.pipeline` for shared task adapters.

Importing this module registers the `multimodal-emotion-recognition` pipeline (with `PIPELINE_REGISTRY`) and the
`kemdy-task` config (with `AutoConfig`), so that a task folder or a Hub repo id of task adapters serves like any
transformers model:

>>> import kemdy_adapters.pipelines  # registers the pipeline
>>> from transformers import pipeline
>>> classifier = pipeline("multimodal-emotion-recognition", model="my-lab/kemdy20-adapter")  # doctest: +SKIP
>>> classifier("utterance.wav", text="오늘 정말 기분이 좋아요", top_k=2)  # doctest: +SKIP
[{'label': 'happy', 'score': 0.61}, {'label': 'neutral', 'score': 0.17}]

The model behind it is an `EmotionRecognizer` (`inference.py`): the task's base checkpoints (recorded in the
task, or `model_kwargs={"text_model": ..., "speech_model": ...}`), the task loaded and verified, bf16 where the
hardware has it (`model_kwargs={"precision": "fp32"}` to turn it off). Inputs: a wav path, or a 16 kHz mono
array with `sampling_rate=`, or a dict `{"audio", "text", "sampling_rate"}`; without a transcript the `.txt`
beside the wav is used, else speech alone (as `predict`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, Pipeline, PretrainedConfig, PreTrainedModel
from transformers.pipelines import PIPELINE_REGISTRY

from .export import PIPELINE_MODEL_TYPE
from .precision import autocast

TASK = "multimodal-emotion-recognition"
RECOGNIZER_OPTIONS = ("text_model", "speech_model", "precision", "int8", "max_speech_seconds", "max_text_length",
                      "allow_unverified")


class KemdyTaskConfig(PretrainedConfig):
    """The `config.json` of a task export: the task's name and labels (everything else is in task_config.json)."""

    model_type = PIPELINE_MODEL_TYPE

    def __init__(self, task: str | None = None, labels: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.task = task
        self.labels = labels


class KemdyTaskModel(PreTrainedModel):
    """A task's adapters in their base model, as `pipeline()` loads it: wraps an `EmotionRecognizer`."""

    config_class = KemdyTaskConfig
    base_model_prefix = "kemdy_task"

    def __init__(self, config: KemdyTaskConfig, recognizer=None):
        super().__init__(config)
        self.recognizer = recognizer
        self.emotion_model = recognizer.model if recognizer is not None else torch.nn.Module()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, config: KemdyTaskConfig | None = None,
                        **kwargs) -> KemdyTaskModel:
        from .inference import EmotionRecognizer

        options = {key: kwargs[key] for key in RECOGNIZER_OPTIONS if key in kwargs}
        hub = {key: kwargs[key] for key in ("revision", "cache_dir", "token") if kwargs.get(key) is not None}
        recognizer = EmotionRecognizer.from_pretrained(pretrained_model_name_or_path, **hub, **options)
        (task,) = recognizer.tasks
        if config is None:
            config = KemdyTaskConfig(task=task, labels=recognizer.model.task_labels(task))
        return cls(config, recognizer)

    def forward(self, **inputs):
        return self.emotion_model(**inputs, task=self.config.task)


class MultimodalEmotionRecognitionPipeline(Pipeline):
    """Speech (and its transcript) -> emotions with scores, highest first (`top_k` of them; all by default)."""

    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_processor = False

    def _sanitize_parameters(self, text=None, sampling_rate=None, top_k=None, **kwargs):
        preprocess = {key: value for key, value in (("text", text), ("sampling_rate", sampling_rate))
                      if value is not None}
        return preprocess, {}, ({"top_k": top_k} if top_k is not None else {})

    def preprocess(self, inputs, text=None, sampling_rate=None):
        if isinstance(inputs, dict):
            text = inputs.get("text", text)
            sampling_rate = inputs.get("sampling_rate", sampling_rate)
            inputs = inputs["audio"]
        name = str(inputs) if isinstance(inputs, (str, Path)) else "audio"
        batch, _ = self.model.recognizer._inputs(inputs, text, sampling_rate, name)
        return batch

    def _forward(self, model_inputs):
        recognizer = self.model.recognizer
        with autocast(recognizer.precision, recognizer.model.device):
            return {"logits": self.model(**model_inputs).logits.float()}

    def postprocess(self, model_outputs, top_k=None):
        probabilities = torch.softmax(model_outputs["logits"][0], -1)
        labels = self.model.config.labels
        ranked = sorted(zip(labels, probabilities.tolist()), key=lambda item: -item[1])
        return [{"label": label, "score": score} for label, score in ranked[: top_k or len(ranked)]]


AutoConfig.register(PIPELINE_MODEL_TYPE, KemdyTaskConfig, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=MultimodalEmotionRecognitionPipeline,
                                    pt_model=KemdyTaskModel, type="multimodal")
