"""A generated stand-in for KEMDy19 and KEMDy20 in their exact on-disk layout, for tests and the demo.

The real corpora may not be redistributed, so `write_sample_corpus` writes both in the layout of
../shared/docs/kemdy-format.md, quirks included, with a learnable signal in both modalities:

What it models:
- Labels: a hidden emotion per utterance, drawn with corpus-like class imbalance (KEMDy20-like mostly neutral);
  10 raters vote (each agrees with the hidden emotion with a corpus-specific probability), the total label is the
  majority, ties are joined with `;` in each corpus's fixed order.
- Valence and arousal follow what a rater perceives, not the hidden label: arousal the voice as synthesised
  (its energy, speaking rate and pitch range after the corpus's expressiveness, so a text-only utterance sounds
  calm and KEMDy20's subdued speakers sound less aroused), valence the words (the cue words' emotion; no cue
  word: 3). Each rater scores an integer 1-5 around those with noise (sd 0.7); the total is their mean with one
  decimal. Listener rows (the other participant's state) are scored around their emotion's typical values.
- Text: Korean sentences whose cue words carry the emotion; each corpus has its own vocabulary (acted drama lines
  versus everyday talk), with a shared core; transcription tags (`b/ o/ n/ l/ u/`, `*`, `+`, fillers, `(A+B)`
  spans, Latin acronyms) are added to the raw line; KEMDy19 in UTF-8, KEMDy20 in cp949.
- Speech: a harmonic voice (speaker-specific pitch, vowel-like formants, syllable envelope) whose pitch level,
  pitch range, energy, breathiness and speaking rate follow the emotion; KEMDy19 speakers are expressive actors
  in a quiet studio, KEMDy20 speakers are less expressive and recorded band-limited with hum and more noise.
- Some utterances carry the emotion in one modality only (text-only or speech-only), the rest in both.
- Quirks: two header rows with both blank-cell conventions, `WAV`/`Wav`, `Start`/`start`, BOM and CRLF files,
  KEMDy19 F/M files that list every row of the session, listener rows, empty bio-signal cells, `disqust`,
  `converted/` copies, bio-signal folders, missing wav/txt files, the known anomalous rows (a wrong id in the
  Session03 F file, stray rows in the Session09 F file, the bad Sess04_impro03_*031 rows).

What it does not model: real voices, words, dialogue context, overlap between speakers' audio, rater
disagreement patterns of real annotators, or the real corpora's sizes. Scores on it say that the code learns and
forgets; they say nothing about real emotion recognition.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .corpus import CORPORA, EMOTIONS

SAMPLE_RATE = 16000

# Tie orders of the total label (kemdy-format.md section 4).
TIE_ORDER = {
    "kemdy19": ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"),
    "kemdy20": ("happy", "surprise", "angry", "neutral", "disgust", "fear", "sad"),
}
RATERS = {
    "kemdy19": ("F", "M", "F", "F", "M", "M", "M", "F", "M", "F"),
    "kemdy20": ("F", "M", "M", "F", "M", "F", "F", "M", "F", "M"),
}
PRIORS = {
    "kemdy19": {"neutral": 0.36, "angry": 0.18, "happy": 0.14, "surprise": 0.10, "sad": 0.08, "disgust": 0.07,
                "fear": 0.07},
    "kemdy20": {"neutral": 0.70, "happy": 0.10, "surprise": 0.04, "angry": 0.04, "sad": 0.05, "disgust": 0.035,
                "fear": 0.035},
}
# How often a rater agrees with the hidden emotion (KEMDy20's raters agree less, as in the real corpora).
AGREEMENT = {"kemdy19": 0.75, "kemdy20": 0.65}
VALENCE_AROUSAL = {
    "angry": (1.8, 4.2), "disgust": (2.0, 3.2), "fear": (2.0, 3.8), "happy": (4.2, 3.8),
    "neutral": (3.0, 2.6), "sad": (1.8, 2.0), "surprise": (3.4, 4.2),
}


def perceived_arousal(prosody: tuple[float, float, float, float, float]) -> float:
    """Arousal (1-5) a listener hears in a voice with `prosody` (see PROSODY): energy, speaking rate and pitch
    range, each scaled to [0, 1] over the emotions' range, weighted 0.45 / 0.35 / 0.20."""
    _, pitch_range, energy, rate, _ = prosody
    scaled = (0.45 * (energy - 0.22) / (0.95 - 0.22) + 0.35 * (rate - 3.0) / (6.8 - 3.0)
              + 0.20 * (pitch_range - 0.8) / (6.5 - 0.8))
    return 1.0 + 4.0 * float(np.clip(scaled, 0.0, 1.0))

# -------------------------------------------------------------------------------------------------- prosody
# pitch factor, pitch range (semitones), energy, syllables per second, breathiness
PROSODY = {
    "neutral": (1.00, 1.5, 0.45, 4.5, 0.05),
    "angry": (1.25, 3.5, 0.95, 6.0, 0.10),
    "happy": (1.30, 4.5, 0.75, 5.5, 0.05),
    "surprise": (1.45, 6.5, 0.80, 4.8, 0.08),
    "fear": (1.35, 2.5, 0.35, 6.8, 0.35),
    "sad": (0.82, 0.8, 0.22, 3.0, 0.25),
    "disgust": (0.92, 2.0, 0.40, 3.4, 0.15),
}
# Expressiveness (how far prosody moves from neutral) and recording conditions per corpus.
RECORDING = {
    "kemdy19": {"expressiveness": 1.0, "snr_db": 35.0, "lowpass_hz": None, "hum": 0.0, "gain": 0.9},
    "kemdy20": {"expressiveness": 0.65, "snr_db": 18.0, "lowpass_hz": 3400.0, "hum": 0.02, "gain": 0.6},
    "clinic": {"expressiveness": 0.85, "snr_db": 24.0, "lowpass_hz": 5500.0, "hum": 0.0, "gain": 0.75},
}
VOWELS = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (570, 840))  # a, i, u, e, o formants

# ---------------------------------------------------------------------------------------------------- words
SHARED_CUES = {
    "angry": ["화가 나", "정말 짜증나"],
    "disgust": ["역겨워", "토할 것 같아"],
    "fear": ["무서워", "겁이 나"],
    "happy": ["너무 좋아", "기뻐"],
    "neutral": [],
    "sad": ["슬퍼", "눈물이 나"],
    "surprise": ["깜짝이야", "진짜야"],
}
CORPUS_CUES = {
    "kemdy19": {
        "angry": ["당장 나가", "어떻게 나한테 이래", "참을 수가 없어"],
        "disgust": ["더러워서 못 보겠어", "구역질 나", "징그러워"],
        "fear": ["누가 쫓아와", "살려줘", "소름 돋아"],
        "happy": ["합격했어", "최고의 날이야", "사랑해"],
        "neutral": [],
        "sad": ["그 사람이 떠났어", "마음이 아파", "보고 싶어"],
        "surprise": ["세상에", "말도 안 돼", "이게 웬일이야"],
    },
    "kemdy20": {
        "angry": ["열받아", "어이없네", "왜 이렇게 해"],
        "disgust": ["비위 상해", "찝찝해", "별로야 진짜"],
        "fear": ["불안해", "걱정돼 죽겠어", "떨려"],
        "happy": ["재밌었어", "신난다", "맛있었어"],
        "neutral": [],
        "sad": ["우울해", "속상해", "서운했어"],
        "surprise": ["헐", "대박", "정말요"],
    },
}
TOPICS = {
    "kemdy19": ["오늘 밤에", "그 편지를", "형사님이", "병원에서", "그 남자가", "아버지가", "무대 위에서", "그날 밤"],
    "kemdy20": ["회사에서", "주말에", "점심 메뉴가", "날씨가", "TV에서", "SNS에", "지하철에서", "BTS 노래가"],
}
NEUTRAL_TAILS = {
    "kemdy19": ["그렇게 됐어", "얘기했잖아", "알고 있어", "기다리고 있어"],
    "kemdy20": ["그랬어요", "봤어요", "있었어요", "했던 것 같아요"],
}
FILLERS = ["음/", "어/", "그/"]


@dataclass
class SampleCorpusConfig:
    """Size and seed of the generated corpora (defaults: ~320 utterances, ~11 MB, a few seconds)."""

    seed: int = 0
    sessions: int = 10
    kemdy19_dialogues: tuple[str, ...] = ("script01", "script02", "impro01", "impro02")
    kemdy20_dialogues: tuple[str, ...] = ("script01", "script02")
    kemdy19_turns: int = 4
    kemdy20_turns: int = 8
    min_seconds: float = 0.7
    max_seconds: float = 1.4


@dataclass
class ExpectedSegment:
    """What a correct loader must return for one generated segment (written to `manifest.json`)."""

    id: str
    corpus: str
    session: str
    labels: list[str]
    emotion: str
    modality: str
    text_raw: str
    text: str
    frames: int


class _Writer:
    def __init__(self, config: SampleCorpusConfig):
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    # ----------------------------------------------------------------------------------------- labels
    def hidden_emotion(self, corpus: str) -> str:
        names, weights = zip(*PRIORS[corpus].items())
        return str(self.rng.choice(names, p=np.array(weights) / sum(weights)))

    def ratings(self, corpus: str, emotion: str, perceived: tuple[float, float] | None = None
                ) -> tuple[list[str], list[tuple[str, int, int]]]:
        """The ten raters' (emotion, valence, arousal) and the total label(s); valence and arousal are scored
        around `perceived` (what the words and the voice carry), or around `emotion`'s typical values."""
        agree = AGREEMENT[corpus]
        center_v, center_a = perceived if perceived is not None else VALENCE_AROUSAL[emotion]
        # A few utterances are ambiguous between two emotions: raters split, which makes the real ties.
        ambiguous = self.rng.random() < 0.08
        other = str(self.rng.choice([name for name in EMOTIONS if name != emotion]))
        votes = []
        for _ in range(10):
            if ambiguous:
                vote = emotion if self.rng.random() < 0.5 else other
            elif self.rng.random() < agree:
                vote = emotion
            else:
                vote = "neutral" if emotion != "neutral" and self.rng.random() < 0.6 else str(
                    self.rng.choice([name for name in EMOTIONS if name != emotion]))
            valence = int(np.clip(round(center_v + self.rng.normal(0, 0.7)), 1, 5))
            arousal = int(np.clip(round(center_a + self.rng.normal(0, 0.7)), 1, 5))
            votes.append((vote, valence, arousal))
        counts = Counter(vote for vote, _, _ in votes)
        top = max(counts.values())
        winners = [name for name in TIE_ORDER[corpus] if counts.get(name) == top]
        return winners, votes

    # ------------------------------------------------------------------------------------------- text
    def sentence(self, corpus: str, emotion: str, with_cue: bool) -> tuple[str, str]:
        """Returns (raw transcript line with tags, the clean words it was built from)."""
        rng = self.rng
        words = [str(rng.choice(TOPICS[corpus]))]
        if with_cue and emotion != "neutral":
            pool = SHARED_CUES[emotion] + CORPUS_CUES[corpus][emotion]
            words.append(str(rng.choice(pool)))
            if rng.random() < 0.4:
                words.append(str(rng.choice(pool)))
        else:
            words.append(str(rng.choice(NEUTRAL_TAILS[corpus])))
        raw_pieces, clean_pieces = [], []
        for word in " ".join(words).split(" "):
            roll = rng.random()
            if roll < 0.06:
                raw_pieces.append(word + "*")
                clean_pieces.append(word)
            elif roll < 0.10:
                raw_pieces.append(f"{word}+ {word}")
                clean_pieces += [word, word]
            elif roll < 0.14:
                raw_pieces.append(f"({word}+{word})")
                clean_pieces += [word, word]
            else:
                raw_pieces.append(word)
                clean_pieces.append(word)
            if rng.random() < 0.08:
                filler = str(rng.choice(FILLERS))
                raw_pieces.append(filler)
                clean_pieces.append(filler.rstrip("/"))
        raw = " ".join(raw_pieces)
        if rng.random() < 0.3:
            raw = "b/ " + raw
        if rng.random() < 0.2:
            raw = raw + " o/"
        if rng.random() < 0.1:
            raw = "n/ " + raw
        if emotion == "happy" and rng.random() < 0.4:
            raw = raw + " l/"
        if rng.random() < 0.05:
            raw = raw + " u/"
        # The clean text is built alongside, not by the loader's cleaner, so tests check the cleaner.
        return raw, " ".join(clean_pieces)

    # ------------------------------------------------------------------------------------------ audio
    @staticmethod
    def prosody(corpus: str, emotion: str) -> tuple[float, ...]:
        """`emotion`'s prosody as the corpus's speakers express it (blended toward neutral)."""
        blend = RECORDING[corpus]["expressiveness"]
        return tuple(n + blend * (e - n) for n, e in zip(PROSODY["neutral"], PROSODY[emotion]))

    def voice(self, corpus: str, emotion: str, base_f0: float, seconds: float) -> np.ndarray:
        blend = RECORDING[corpus]["expressiveness"]
        prosody = self.prosody(corpus, emotion)
        return synthesize_voice(self.rng, prosody, RECORDING[corpus], base_f0, seconds,
                                rise=4.0 * blend if emotion == "surprise" else 0.0,
                                tremor=0.6 if emotion == "fear" else 0.0)

    def utterance(self, corpus: str, base_f0: float, audio: bool = True) -> dict:
        emotion = self.hidden_emotion(corpus)
        modality = str(self.rng.choice(["both", "text", "speech"], p=[0.7, 0.15, 0.15]))
        if emotion == "neutral":
            modality = "both"
        raw, clean = self.sentence(corpus, emotion, with_cue=modality in ("both", "text"))
        seconds = float(self.rng.uniform(self.config.min_seconds, self.config.max_seconds))
        voiced = emotion if modality in ("both", "speech") else "neutral"
        waveform = self.voice(corpus, voiced, base_f0, seconds) if audio else None
        worded = emotion if modality in ("both", "text") and emotion != "neutral" else None
        perceived = (VALENCE_AROUSAL[worded][0] if worded else 3.0, perceived_arousal(self.prosody(corpus, voiced)))
        labels, votes = self.ratings(corpus, emotion, perceived)
        return {"emotion": emotion, "modality": modality, "raw": raw, "clean": clean, "audio": waveform,
                "labels": labels, "votes": votes}


def synthesize_voice(
    rng: np.random.Generator, prosody: tuple[float, float, float, float, float], recording: dict, base_f0: float,
    seconds: float, rise: float = 0.0, tremor: float = 0.0, formant_scale: float = 1.0,
) -> np.ndarray:
    """One utterance of the harmonic voice: `prosody` is (pitch factor, pitch range in semitones, energy,
    syllables per second, breathiness); `recording` holds `snr_db`, `lowpass_hz` (or None), `hum` and `gain`;
    `rise` semitones of final rise, `tremor` semitones of 7 Hz tremor, `formant_scale` the speaker's vocal-tract
    scaling of the vowel formants."""
    pitch, semitones, energy, rate, breath = prosody
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    # Pitch contour: declination plus smooth random movement with the emotion's range.
    knots = rng.normal(0, semitones / 2, size=max(3, int(seconds * 4)))
    contour = np.interp(t, np.linspace(0, seconds, len(knots)), knots) - 1.0 * t / seconds
    if rise:
        contour += rise * np.clip((t - 0.7 * seconds) / (0.3 * seconds), 0, 1)
    if tremor:
        contour += tremor * np.sin(2 * np.pi * 7 * t)
    f0 = base_f0 * pitch * 2 ** (contour / 12)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    # Syllables: one vowel each, with a raised-cosine envelope and short gaps.
    syllables = max(2, int(round(seconds * rate * rng.uniform(0.85, 1.15))))
    bounds = np.sort(rng.uniform(0, n, size=syllables - 1)).astype(int)
    edges = np.concatenate([[0], bounds, [n]])
    envelope = np.zeros(n)
    formant = np.zeros((n, 2))
    for left, right in zip(edges[:-1], edges[1:]):
        width = right - left
        if width < 8:
            continue
        voiced = int(width * rng.uniform(0.65, 0.9))
        envelope[left:left + voiced] = np.sin(np.linspace(0, np.pi, voiced)) ** 2
        formant[left:right] = VOWELS[rng.integers(len(VOWELS))]
    if formant_scale != 1.0:
        formant *= formant_scale
    signal = np.zeros(n)
    for k in range(1, 26):
        freq = k * f0
        weight = (np.exp(-((freq - formant[:, 0]) / 150) ** 2) + 0.7 * np.exp(-((freq - formant[:, 1]) / 200) ** 2)
                  + 0.15 / k)
        weight[freq > SAMPLE_RATE / 2 - 200] = 0
        signal += weight * np.sin(k * phase)
    signal = signal / (np.abs(signal).max() + 1e-9)
    signal = signal * (1 - breath) + breath * rng.normal(0, 0.5, n)
    signal *= envelope * energy
    # Recording conditions.
    if recording["lowpass_hz"]:
        spectrum = np.fft.rfft(signal)
        spectrum[np.fft.rfftfreq(n, 1 / SAMPLE_RATE) > recording["lowpass_hz"]] = 0
        signal = np.fft.irfft(spectrum, n)
    signal += recording["hum"] * np.sin(2 * np.pi * 60 * t)
    power = np.mean(signal**2) + 1e-9
    signal += rng.normal(0, np.sqrt(power / 10 ** (recording["snr_db"] / 10)), n)
    signal *= recording["gain"] / (np.abs(signal).max() + 1e-9) * max(energy, 0.2)
    return np.clip(signal, -1, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------------- files


def _rows_to_csv(path: Path, rows: list[list[str]], bom: bool = False, crlf: bool = False) -> None:
    newline = "\r\n" if crlf else "\n"
    text = newline.join(",".join(row) for row in rows) + newline
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))


def _rater_cells(votes, spelling: dict[str, str]) -> list[str]:
    cells = []
    for vote, valence, arousal in votes:
        cells += [spelling.get(vote, vote), str(valence), str(arousal)]
    return cells


def _totals(votes) -> tuple[str, str]:
    valence = np.mean([v for _, v, _ in votes])
    arousal = np.mean([a for _, _, a in votes])
    return f"{valence:.1f}", f"{arousal:.1f}"


def _write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="PCM_16")


def _write_kemdy19(root: Path, writer: _Writer, expected: list[ExpectedSegment]) -> None:
    config, rng = writer.config, writer.rng
    (root / "annotation").mkdir(parents=True)
    for session in range(1, config.sessions + 1):
        sess = f"Sess{session:02d}"
        offset = 0 if session <= 10 else 10
        raters = [f"Eval{offset + i + 1:02d}{g}" for i, g in enumerate(RATERS["kemdy19"])]
        voices = {"F": float(rng.uniform(185, 235)), "M": float(rng.uniform(100, 135))}
        # One list of rows per file: each file holds every segment of the session.
        rows = {"F": [], "M": []}
        for dialogue in config.kemdy19_dialogues:
            counters = {"F": 0, "M": 0}
            clock = float(rng.uniform(1, 5))
            impro = dialogue.startswith("impro")
            for turn in range(config.kemdy19_turns):
                gender = "F" if (turn + session) % 2 == 0 else "M"
                counters[gender] += 1
                segment_id = f"{sess}_{dialogue}_{gender}{counters[gender]:03d}"
                spoken = writer.utterance("kemdy19", voices[gender])
                folder = root / "wav" / f"Session{session:02d}" / f"{sess}_{dialogue}"
                _write_wav(folder / f"{segment_id}.wav", spoken["audio"])
                (folder / f"{segment_id}.txt").write_text(spoken["raw"] + (" " if turn % 3 == 0 else "") + "\n",
                                                          encoding="utf-8")
                start = clock
                end = start + len(spoken["audio"]) / SAMPLE_RATE
                # Segments sometimes overlap in time.
                clock = end + float(rng.uniform(-0.3, 1.0))
                expected.append(ExpectedSegment(
                    id=segment_id, corpus="kemdy19", session=sess, labels=spoken["labels"],
                    emotion=spoken["emotion"], modality=spoken["modality"], text_raw=spoken["raw"] + (
                        " " if turn % 3 == 0 else ""), text=spoken["clean"], frames=len(spoken["audio"])))
                for file_gender in ("F", "M"):
                    if file_gender == gender:
                        labels, votes = spoken["labels"], spoken["votes"]
                    else:  # the listener's state while the other participant speaks
                        labels, votes = writer.ratings("kemdy19", writer.hidden_emotion("kemdy19"))
                    valence, arousal = _totals(votes)
                    bio = ["", "", "", "", "", ""] if impro else [
                        f"{rng.uniform(0, 0.3):.6f}", f"{rng.uniform(0, 0.3):.6f}", f"{rng.uniform(0, 0.2):.6f}",
                        f"{rng.uniform(0, 0.2):.6f}", f"{rng.uniform(30, 32):.2f}", f"{rng.uniform(30, 32):.2f}"]
                    rows[file_gender].append(
                        [f"{start:.3f}", f"{end:.3f}", *bio, segment_id, ";".join(labels), valence, arousal,
                         *_rater_cells(votes, {})])
            if dialogue == config.kemdy19_dialogues[0] and session <= 2:
                # A `converted/` copy (stereo, 44.1 kHz): must never be loaded.
                source = root / "wav" / f"Session{session:02d}" / f"{sess}_{dialogue}"
                converted = source / "converted"
                converted.mkdir()
                for wav in sorted(source.glob("*.wav"))[:1]:
                    audio, _ = sf.read(wav, dtype="float32")
                    stereo = np.stack([np.interp(np.linspace(0, len(audio) - 1, int(len(audio) * 44100 / 16000)),
                                                 np.arange(len(audio)), audio)] * 2, axis=1)
                    sf.write(converted / wav.name, stereo, 44100, subtype="PCM_16")
                    shutil.copy(wav.with_suffix(".txt"), converted / wav.with_suffix(".txt").name)
        _kemdy19_anomalies(session, rows, rng)
        for gender in ("F", "M"):
            header1 = ["Numb", "Wav", "", "ECG", "", "E4-EDA", "", "E4-TEMP", "", "Segment ID", "Total Evaluation",
                       "", ""]
            header2 = ["", "start", "end", "start", "end", "start", "end", "start", "end", "", "Emotion", "Valence",
                       "Arousal"]
            if session == 2:
                header2[1:3] = ["Start", "End"]
            for name in raters:
                header1 += [name, "", ""]
                header2 += ["Emotion", "Valence", "Arousal"]
            body = [[str(index + 1), *row] for index, row in enumerate(rows[gender])]
            _rows_to_csv(root / "annotation" / f"Session{session:02d}_{gender}_res.csv", [header1, header2, *body],
                         crlf=session == 4)
        for signal in ("ECG", "EDA", "TEMP"):
            folder = root / signal / f"Session{session:02d}" / "Original"
            folder.mkdir(parents=True, exist_ok=True)
            for gender in ("F", "M"):
                (folder / f"{sess}{gender}.csv").write_text("time,value\n0.0,0.1\n0.25,0.1\n")


def _kemdy19_anomalies(session: int, rows: dict[str, list[list[str]]], rng) -> None:
    """The documented anomalies of the real KEMDy19 annotation files."""
    id_column = 8
    if session == 3:
        # A row of the F file carries Sess03_impro02_M001 where Sess03_impro02_F001 is meant.
        for row in rows["F"]:
            if row[id_column] == "Sess03_impro02_F001":
                row[id_column] = "Sess03_impro02_M001"
    if session == 9:
        template = rows["F"][0]
        for stray in ("Sess09_script06_M001", "Sess09_impro01_M001"):
            rows["F"].append([*template[:id_column], stray, *template[id_column + 1:]])
    if session == 4:
        template = rows["M"][0]
        for gender in ("F", "M"):
            rows[gender].append([*template[:id_column], f"Sess04_impro03_{gender}031", *template[id_column + 1:]])


def _write_kemdy20(root: Path, writer: _Writer, expected: list[ExpectedSegment]) -> None:
    config, rng = writer.config, writer.rng
    (root / "annotation").mkdir(parents=True)
    raters = [f"Eval{i + 1:02d}{g}" for i, g in enumerate(RATERS["kemdy20"])]
    for session in range(1, config.sessions + 1):
        sess = f"Sess{session:02d}"
        users = {}
        for number in (2 * session - 1, 2 * session):
            gender = str(rng.choice(["F", "M"]))  # pairs may be same-gender
            low, high = (185, 235) if gender == "F" else (95, 135)
            users[f"User{number:03d}{gender}"] = float(rng.uniform(low, high))
        rows = []
        for dialogue in config.kemdy20_dialogues:
            counter, clock = 0, float(rng.uniform(1, 5))
            for turn in range(config.kemdy20_turns):
                user = list(users)[turn % 2]
                counter += 1
                segment_id = f"{sess}_{dialogue}_{user}_{counter:03d}"
                spoken = writer.utterance("kemdy20", users[user])
                folder = root / "wav" / f"Session{session:02d}"
                _write_wav(folder / f"{segment_id}.wav", spoken["audio"])
                (folder / f"{segment_id}.txt").write_bytes((spoken["raw"] + "\n").encode("cp949"))
                start = clock
                end = start + len(spoken["audio"]) / SAMPLE_RATE
                clock = end + float(rng.uniform(-0.3, 1.0))
                expected.append(ExpectedSegment(
                    id=segment_id, corpus="kemdy20", session=sess, labels=spoken["labels"],
                    emotion=spoken["emotion"], modality=spoken["modality"], text_raw=spoken["raw"],
                    text=spoken["clean"], frames=len(spoken["audio"])))
                valence, arousal = _totals(spoken["votes"])
                labels = ["disqust" if label == "disgust" else label for label in spoken["labels"]]
                rows.append([f"{start:.6f}", f"{end:.6f}", segment_id, ";".join(labels), valence, arousal,
                             *_rater_cells(spoken["votes"], {"disgust": "disqust"})])
                for signal in ("EDA", "IBI", "TEMP"):
                    bio = root / signal / f"Session{session:02d}"
                    bio.mkdir(parents=True, exist_ok=True)
                    (bio / f"{sess}_{dialogue}_{user}.csv").write_text("value,time\n0.1,0\n")
        header1 = ["Numb", "WAV" if session == 5 else "Wav", " ", "Segment ID", "Total Evaluation", " ", " "]
        header2 = [" ", "start", "end", " ", "Emotion", "Valence", "Arousal"]
        for name in raters:
            header1 += [name, " ", " "]
            header2 += ["Emotion", "Valence", "Arousal"]
        body = [[str(index + 1), *row] for index, row in enumerate(rows)]
        _rows_to_csv(root / "annotation" / f"Sess{session:02d}_eval.csv", [header1, header2, *body],
                     bom=session == 6, crlf=session == 7)


def _remove_files(root19: Path, root20: Path, expected: list[ExpectedSegment]) -> dict[str, str]:
    """Deletes a few files, as in the real corpora; returns {segment id: what is missing}."""
    missing = {}
    male19 = [seg for seg in expected if seg.corpus == "kemdy19" and "_M0" in seg.id and len(seg.labels) == 1]
    for segment in male19[1:4]:  # transcripts missing (in the real corpus all such are male speakers)
        session, dialogue = segment.id.split("_")[:2]
        (root19 / "wav" / f"Session{session[4:]}" / f"{session}_{dialogue}" / f"{segment.id}.txt").unlink()
        missing[segment.id] = "transcript (.txt) missing"
    female19 = [seg for seg in expected if seg.corpus == "kemdy19" and "_F0" in seg.id and len(seg.labels) == 1]
    segment = female19[-1]
    session, dialogue = segment.id.split("_")[:2]
    (root19 / "wav" / f"Session{session[4:]}" / f"{session}_{dialogue}" / f"{segment.id}.wav").unlink()
    missing[segment.id] = "wav file missing"
    segment = [seg for seg in expected if seg.corpus == "kemdy20" and len(seg.labels) == 1][-1]
    (root20 / "wav" / f"Session{segment.session[4:]}" / f"{segment.id}.wav").unlink()
    missing[segment.id] = "wav file missing"
    return missing


def write_sample_corpus(output: str | Path, config: SampleCorpusConfig | None = None, overwrite: bool = False) -> Path:
    """Writes `KEMDy19/`, `KEMDy20_v1_1/` and `manifest.json` (what a correct loader returns) into `output`.

    Args:
        output: The folder to create.
        config: Size and seed; the same config always writes the same bytes.
        overwrite: Replace an existing sample corpus in `output` (only one this function wrote).

    Returns:
        The output folder.
    """
    config = config or SampleCorpusConfig()
    output = Path(output)
    manifest_path = output / "manifest.json"
    if output.exists() and any(output.iterdir()):
        if not (overwrite and manifest_path.exists()):
            raise FileExistsError(f"{output}: folder exists and is not empty (pass overwrite=True / --overwrite to "
                                  "replace a sample corpus written earlier)")
        for name in ("KEMDy19", "KEMDy20_v1_1"):
            shutil.rmtree(output / name, ignore_errors=True)
        manifest_path.unlink()
    output.mkdir(parents=True, exist_ok=True)
    writer = _Writer(config)
    expected: list[ExpectedSegment] = []
    _write_kemdy19(output / "KEMDy19", writer, expected)
    _write_kemdy20(output / "KEMDy20_v1_1", writer, expected)
    missing = _remove_files(output / "KEMDy19", output / "KEMDy20_v1_1", expected)
    manifest = {
        "config": asdict(config),
        "missing": missing,
        "segments": [asdict(segment) for segment in expected],
    }
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return output


def load_manifest(output: str | Path) -> dict:
    return json.loads((Path(output) / "manifest.json").read_text(encoding="utf-8"))


def synthetic_utterances(count: int, seed: int, audio: bool = True) -> list[dict]:
    """`count` utterances from both generated corpora, in memory (no files, no labels used by callers that
    pretrain): the demo's stand-in for the unlabelled speech and text real encoders are pretrained on.
    `audio=False` skips the (slow) waveform synthesis."""
    writer = _Writer(SampleCorpusConfig(seed=seed))
    utterances = []
    for index in range(count):
        corpus = CORPORA[index % 2]
        female = writer.rng.random() < 0.5
        base_f0 = float(writer.rng.uniform(185, 235) if female else writer.rng.uniform(95, 135))
        utterances.append(writer.utterance(corpus, base_f0, audio=audio))
    return utterances



# ----------------------------------------------------------------------------------- a third, generic corpus
# A stand-in for "any other corpus": its own label set (4 states, not the 7 emotions), speakers, recording chain
# and words, in the generic task layout (metadata.csv beside the audio; tasks.py), with about a fifth of its
# utterances untranscribed.
CLINIC_LABELS = ("calm", "tense", "cheerful", "low")
CLINIC_PRIORS = {"calm": 0.4, "tense": 0.25, "cheerful": 0.2, "low": 0.15}
CLINIC_VOICE = {"calm": "neutral", "tense": "angry", "cheerful": "happy", "low": "sad"}
CLINIC_TOPICS = ["진료실에서", "약을 먹고", "검사 결과가", "요즘 잠이", "상담 시간에", "가족들이"]
CLINIC_CUES = {
    "calm": ["괜찮아요", "편안해요", "그냥 그래요"],
    "tense": ["긴장돼요", "초조해요", "자꾸 화가 나요"],
    "cheerful": ["즐거워요", "웃음이 나요", "기분이 좋아요"],
    "low": ["힘들어요", "기운이 없어요", "다 귀찮아요"],
}


def write_generic_corpus(output: str | Path, seed: int = 0, speakers: int = 10, utterances: int = 12,
                         min_seconds: float = 0.7, max_seconds: float = 1.4, missing_text: float = 0.2) -> Path:
    """Writes a generic-layout corpus (`metadata.csv`, `labels.txt`, `audio/<speaker>/*.wav`) into `output`.

    Labels `calm, tense, cheerful, low` (that order, in `labels.txt`) carried by prosody and words; a fraction
    `missing_text` of the utterances has an empty `text` cell (no transcript). Folds are drawn over `speaker`.
    """
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise FileExistsError(f"{output}: folder exists and is not empty")
    rng = np.random.default_rng(seed + 7919)
    writer = _Writer(SampleCorpusConfig(seed=seed + 7919, min_seconds=min_seconds, max_seconds=max_seconds))
    names, weights = zip(*CLINIC_PRIORS.items())
    rows = [["file_name", "label", "text", "speaker"]]
    for number in range(1, speakers + 1):
        speaker = f"spk{number:02d}"
        female = number % 2 == 0
        base_f0 = float(rng.uniform(175, 225) if female else rng.uniform(90, 130))
        for index in range(1, utterances + 1):
            label = str(rng.choice(names, p=np.array(weights) / sum(weights)))
            seconds = float(rng.uniform(min_seconds, max_seconds))
            audio = writer.voice("clinic", CLINIC_VOICE[label], base_f0, seconds)
            file_name = f"audio/{speaker}/{speaker}_{index:03d}.wav"
            _write_wav(output / file_name, audio)
            words = [str(rng.choice(CLINIC_TOPICS)), str(rng.choice(CLINIC_CUES[label]))]
            text = "" if rng.random() < missing_text else " ".join(words)
            rows.append([file_name, label, text, speaker])
    import csv

    with open(output / "metadata.csv", "w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows(rows)
    (output / "labels.txt").write_text("\n".join(CLINIC_LABELS) + "\n", encoding="utf-8")
    return output
