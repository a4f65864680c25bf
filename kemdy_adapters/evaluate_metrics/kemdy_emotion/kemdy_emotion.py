"""kemdy_emotion: accuracy, micro/weighted/macro F1 and UAR as a local `evaluate` metric module.

`evaluate.load("f1")` fetches its script from the hub; this module works offline:

    import evaluate
    from kemdy_adapters.evaluate_metrics import METRIC_PATH
    metric = evaluate.load(METRIC_PATH)
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 2])
"""

import datasets
import evaluate

from kemdy_adapters.metrics import classification_scores

_DESCRIPTION = """Emotion classification scores used by kemdy-adapters: accuracy, micro F1, weighted F1, macro F1
and unweighted average recall (mean per-class recall over the classes present)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): reference class ids.
Returns:
    accuracy, micro_f1, weighted_f1, macro_f1, uar (floats in [0, 1]).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KemdyEmotion(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references):
        return classification_scores(predictions, references)
