"""Cards rendered from the templates in `hub_cards/`: the dataset cards of both loading scripts, and (through
`hub.py`) the model cards of pushed task adapters."""

from __future__ import annotations

from pathlib import Path
from string import Template

HUB_CARDS = Path(__file__).resolve().parent.parent / "hub_cards"

KEMDY_CITATION = """\
K. J. Noh and H. Jeong, "KEMDy19" and "KEMDy20", Korean Emotion Multimodal Database, ETRI
(https://nanum.etri.re.kr/share/kjnoh/KEMDy20?lang=En_us)."""

DATASET_CARD_VALUES = {
    "kemdy19": {
        "pretty_name": "KEMDy19",
        "corpus": "kemdy19",
        "folder": "KEMDy19",
        "homepage": "https://nanum.etri.re.kr/share/kjnoh/KEMDy19?lang=En_us",
        "summary": "KEMDy19 is ETRI's Korean multimodal emotion corpus of acted dyadic conversations: 20 sessions of "
        "two voice actors (one female, one male), 10 dialogues each (6 scripted, 4 improvised), with speech, "
        "transcripts, bio-signals and 10 raters' emotion, valence and arousal judgements per segment.",
        "layout": "`annotation/SessionNN_{F,M}_res.csv` (43 columns) and `wav/SessionNN/SessNN_<dialogue>/<id>.wav`\n"
        "with a `.txt` beside each wav. Both annotation files of a session list every segment of both\n"
        "speakers: the `_F_` file rates the female participant, also while she listens. The script keeps\n"
        "only the rows whose segment gender equals the file's (the speaker filter). Known anomalies are\n"
        "handled: the Session03 F-file row that carries `Sess03_impro02_M001` for `Sess03_impro02_F001` is\n"
        "renamed (the genuine M001 row is recognised by its times in the M file), the stray male rows of the\n"
        "Session09 F file fall to the speaker filter, and `Sess04_impro03_M031`/`F031` are excluded.",
        "encodings": "UTF-8",
        "skips": "the other speaker's rows (speaker filter), tied rows (single_label),\n  rows "
        "without wav or transcript (seven in the real corpus), the known bad rows, malformed ids and duplicates.",
        "example_id": "Sess01_script01_F002",
        "example_session": "Sess01",
        "example_dialogue": "script01",
        "example_speaker": "Sess01_F",
        "example_gender": "F",
        "sizes": "20 sessions, 40 voice actors, 10,279 speaker utterances; single-label counts: neutral 3793, "
        "angry 1839,\nhappy 1394, surprise 985, sad 769, disgust 395, fear 379; 643 tied rows.",
        "balance_note": "neutral is 37 % of the rows.",
    },
    "kemdy20": {
        "pretty_name": "KEMDy20",
        "corpus": "kemdy20",
        "folder": "KEMDy20_v1_1",
        "homepage": "https://nanum.etri.re.kr/share/kjnoh/KEMDy20?lang=En_us",
        "summary": "KEMDy20 (v1.1) is ETRI's Korean multimodal emotion corpus of free conversations between "
        "ordinary adults: 40 sessions, 80 speakers, 6 scripted topics each, with speech, transcripts, "
        "bio-signals and 10 raters' emotion, valence and arousal judgements per segment.",
        "layout": "`annotation/SessNN_eval.csv` (37 columns, blank row-1 cells are a single space) and\n"
        "`wav/SessionNN/<id>.wav`, flat per session, with a `.txt` beside each wav. Every row rates the\n"
        "segment's own speaker.",
        "encodings": "cp949",
        "skips": "tied rows (single_label), rows without wav or transcript, malformed ids\n  and duplicates.",
        "example_id": "Sess01_script01_User002M_001",
        "example_session": "Sess01",
        "example_dialogue": "script01",
        "example_speaker": "User002M",
        "example_gender": "M",
        "sizes": "40 sessions, 80 adults, 13,462 segments; single-label counts: neutral 11,120 (86.7 %), happy "
        "1,183,\nsurprise 156, angry 144, sad 121, disgust 61, fear 43; 634 tied rows.",
        "balance_note": "always predicting neutral already gives about 0.87 accuracy and 0.80 weighted F1.",
    },
}


def render_template(name: str, values: dict) -> str:
    """`hub_cards/<name>` with every `$placeholder` filled (a missing value is an error)."""
    return Template((HUB_CARDS / name).read_text(encoding="utf-8")).substitute(values)


def check_template_values(template: str, values: dict, known: set[str] = frozenset()) -> None:
    """Raises if the Jinja `template` names a variable that neither `values` nor `known` gives (Jinja would
    silently render it empty)."""
    import jinja2
    from jinja2 import meta

    missing = meta.find_undeclared_variables(jinja2.Environment().parse(template)) - set(values) - set(known)
    if missing:
        raise KeyError(f"card template values missing: {', '.join(sorted(missing))}")


def render_dataset_card(corpus: str) -> str:
    """The dataset card (README.md with YAML metadata) of `dataset_scripts/<corpus>`."""
    return render_template("dataset_card.md", {**DATASET_CARD_VALUES[corpus], "citation": KEMDY_CITATION})


def write_dataset_cards(scripts_dir: Path | None = None) -> list[Path]:
    """Re-renders both dataset cards into `dataset_scripts/*/README.md` (run after editing the template)."""
    scripts_dir = scripts_dir or HUB_CARDS.parent / "dataset_scripts"
    written = []
    for corpus in DATASET_CARD_VALUES:
        path = scripts_dir / corpus / "README.md"
        path.write_text(render_dataset_card(corpus), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_dataset_cards():
        print(f"wrote {path}")
