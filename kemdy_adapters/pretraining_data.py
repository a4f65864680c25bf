"""Unlabelled text and speech for pretraining the demo's encoders, broader than the benchmark's corpus.

Real encoders are pretrained on large unlabelled corpora; the demo's stand-ins are pretrained here, offline, on:
- text: sentences in the sample corpus's style drawn with another seed than any benchmark corpus, mixed with
  everyday Korean sentences assembled from a general lexicon (people, places, things, times, and predicates in
  several speech levels, with particles chosen by the final consonant as Korean grammar does), so that the
  tokenizer and the encoder meet words beyond the benchmark's;
- speech: the harmonic voice of `sample_corpus.synthesize_voice` with continuously random speakers (pitch 75 to
  320 Hz, vocal-tract scaling), speaking rates, pitch ranges, energies, breathiness, final rises and tremor, and
  random recording chains (signal-to-noise ratio 3 to 40 dB, band limits from telephone to full band, mains hum,
  gain); the seven emotion presets are not used, so the encoder sees prosody, not the benchmark's classes.
No emotion labels are produced or used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sample_corpus import synthesize_voice, synthetic_utterances


@dataclass
class PretrainConfig:
    """What `pretrain.pretrain_encoders` makes (the defaults made the shipped encoders)."""

    hidden_size: int = 64
    layers: int = 2
    vocab_size: int = 3000
    sentences: int = 12000
    recordings: int = 1200
    text_steps: int = 5000
    speech_steps: int = 800
    seed: int = 1000
    corpus_style: float = 0.8
    """Share of the generated text in the sample corpus's style (another seed), the rest general sentences."""
    dropout: float = 0.1
    """Dropout inside both encoders while pretraining (measured: without it the pooled text vector carries
    about half as much a linear probe can use)."""
    saved_dropout: float = 0.0
    """Dropout written into the saved configs, so what fine-tuning uses. 0: on a CPU at this size, dropout's
    random masks take about half the time of a training step (measured 33.7 against 17.8 ms per step, batch
    16); the emotion model's own dropout before the classifier stays."""


PEOPLE = ["나", "너", "우리", "친구", "엄마", "아빠", "동생", "언니", "형", "누나", "오빠", "할머니",
          "할아버지", "선생님", "학생", "의사", "간호사", "사장님", "동료", "팀장님", "이웃", "아이", "남편",
          "아내", "손님", "기사님", "교수님", "후배", "선배", "민수", "지영", "철수", "영희", "수진", "현우"]
PLACES = ["집", "학교", "회사", "병원", "시장", "공원", "식당", "카페", "도서관", "은행", "역", "공항",
          "바다", "산", "교회", "극장", "편의점", "사무실", "부엌", "운동장", "버스 정류장", "백화점",
          "미용실", "약국", "놀이터"]
THINGS = ["밥", "커피", "책", "편지", "전화", "사진", "영화", "노래", "숙제", "일", "돈", "선물", "가방",
          "옷", "신발", "우산", "컴퓨터", "휴대폰", "차", "자전거", "꽃", "케이크", "라면", "김치", "과일",
          "물", "약", "표", "열쇠", "시험", "계획", "문제", "소식", "이야기", "뉴스", "메시지", "이메일",
          "게임", "드라마", "음악"]
TIMES = ["오늘", "어제", "내일", "아까", "지금", "요즘", "주말에", "아침에", "저녁에", "밤에", "점심때",
         "작년에", "다음 주에", "방금", "가끔", "매일", "벌써", "이따가", "새벽에", "연휴에"]
ADVERBS = ["정말", "너무", "조금", "아주", "진짜", "많이", "별로", "계속", "다시", "같이", "빨리", "천천히",
           "혼자", "갑자기", "결국", "아마", "꼭", "그냥", "자꾸", "거의"]
# Transitive predicates (take an object), in several speech levels and tenses.
TRANSITIVE = ["먹었어", "먹었어요", "먹었습니다", "먹을래", "봤어", "봤어요", "봤습니다", "볼 거야", "샀어",
              "샀어요", "사고 싶어", "읽었어", "읽고 있어요", "만들었어", "만들 거예요", "보냈어", "보냈어요",
              "받았어", "받았어요", "잃어버렸어", "찾았어요", "기다렸어", "좋아해", "좋아해요", "싫어해",
              "들었어", "들었어요", "준비했어요", "끝냈어", "시작했어요", "고쳤어", "빌렸어요", "버렸어",
              "챙겼어요", "잊어버렸어요"]
# Intransitive predicates and adjectives (after a place, a subject or alone).
INTRANSITIVE = ["갔어", "갔어요", "갔습니다", "왔어", "왔어요", "있어", "있어요", "없어", "없어요", "잤어",
                "잤어요", "일했어", "공부했어요", "쉬었어", "놀았어요", "걸었어", "뛰었어요", "울었어",
                "웃었어요", "기다렸어요", "살아요", "일해요", "만났어", "만났어요", "도착했어요", "늦었어",
                "늦었어요", "바빠", "바빠요", "피곤해", "피곤해요", "괜찮아", "괜찮아요", "조용해",
                "시끄러워요", "추워", "더워요", "멀어요", "가까워", "비싸요", "싸", "맛있어", "맛없어요",
                "재미있어", "재미없어요", "어려워", "쉬워요", "좋았어", "나빴어요", "행복해", "외로워요",
                "신나", "답답해", "설레요", "아쉬워", "부끄러워요", "놀랐어", "걱정돼요", "무서웠어",
                "화났어요", "짜증 나", "슬펐어", "기뻤어요", "귀찮아", "지루해요", "억울해", "뿌듯해요",
                "미안해", "고마워요", "감동했어", "실망했어요", "긴장돼", "편해요"]
QUESTIONS = ["뭐 했어?", "어디 가?", "언제 와요?", "왜 그래?", "괜찮아?", "누구야?", "진짜요?",
             "어떻게 됐어?", "밥 먹었어?", "몇 시예요?", "얼마예요?", "같이 갈래?"]
INTERJECTIONS = ["아", "어", "음", "와", "에이", "야", "응", "네", "아니", "그래", "글쎄", "헐", "아이고",
                 "세상에", "어머", "ㅋㅋ", "ㅠㅠ"]
LATIN = ["TV", "SNS", "OK", "PC", "KTX", "BTS", "CEO", "DJ", "MRI", "IT", "CCTV", "USB", "1", "2", "3", "10",
         "100", "2024년", "3시", "5분"]


def has_final_consonant(word: str) -> bool:
    """Whether the last Hangul syllable of `word` has a final consonant (batchim), which picks a particle:
    이/가, 은/는, 을/를, 과/와. Non-Hangul endings count as vowel-final."""
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def particle(word: str, kind: str) -> str:
    forms = {"subject": ("이", "가"), "topic": ("은", "는"), "object": ("을", "를"), "with": ("과", "와")}
    after_consonant, after_vowel = forms[kind]
    return word + (after_consonant if has_final_consonant(word) else after_vowel)


def general_sentences(count: int, seed: int) -> list[str]:
    """`count` everyday Korean sentences from the general lexicon (not the benchmark's templates)."""
    rng = np.random.default_rng(seed)

    def pick(words: list[str]) -> str:
        return str(words[rng.integers(len(words))])

    sentences = []
    for _ in range(count):
        form = rng.integers(6)
        words = []
        if rng.random() < 0.25:
            words.append(pick(INTERJECTIONS))
        if rng.random() < 0.5:
            words.append(pick(TIMES))
        if form == 0:
            words += [particle(pick(PEOPLE), "subject" if rng.random() < 0.5 else "topic"),
                      particle(pick(THINGS), "object"), pick(TRANSITIVE)]
        elif form == 1:
            words += [particle(pick(PEOPLE), "with"), pick(PLACES) + ("에서" if rng.random() < 0.6 else "에"),
                      pick(INTRANSITIVE)]
        elif form == 2:
            words += [particle(pick(THINGS), "subject"), pick(ADVERBS), pick(INTRANSITIVE)]
        elif form == 3:
            words += [pick(PLACES) + "에서", particle(pick(THINGS), "object"), pick(ADVERBS), pick(TRANSITIVE)]
        elif form == 4:
            words += [pick(QUESTIONS)]
        else:
            words += [pick(LATIN), particle(pick(THINGS), "topic"), pick(ADVERBS), pick(INTRANSITIVE)]
        sentences.append(" ".join(words))
    return sentences


def pretraining_texts(count: int, seed: int, corpus_style: float) -> list[str]:
    """Unlabelled pretraining text: general sentences, plus a share `corpus_style` of sentences in the sample
    corpus's style drawn with another seed than any benchmark corpus (no benchmark sentence is seen)."""
    styled = int(count * corpus_style)
    texts = general_sentences(count - styled, seed)
    texts += [item["clean"] for item in synthetic_utterances(styled, seed + 1, audio=False)]
    order = np.random.default_rng(seed + 2).permutation(len(texts))
    return [texts[i] for i in order]


def varied_recordings(count: int, seed: int, min_seconds: float = 0.5, max_seconds: float = 2.0
                      ) -> list[np.ndarray]:
    """`count` waveforms (16 kHz) with random speakers, prosody and recording chains (module docstring)."""
    rng = np.random.default_rng(seed)
    waveforms = []
    for _ in range(count):
        prosody = (float(rng.uniform(0.75, 1.5)), float(rng.uniform(0.3, 7.0)), float(rng.uniform(0.15, 1.0)),
                   float(rng.uniform(2.5, 7.5)), float(rng.uniform(0.0, 0.4)))
        recording = {
            "snr_db": float(rng.uniform(3, 40)),
            "lowpass_hz": [None, None, 7000.0, 5500.0, 4000.0, 3400.0, 3000.0][rng.integers(7)],
            "hum": float(rng.uniform(0, 0.04)) if rng.random() < 0.3 else 0.0,
            "gain": float(rng.uniform(0.15, 1.0)),
        }
        base_f0 = float(np.exp(rng.uniform(np.log(75), np.log(320))))
        seconds = float(rng.uniform(min_seconds, max_seconds))
        waveforms.append(synthesize_voice(
            rng, prosody, recording, base_f0, seconds,
            rise=float(rng.uniform(0, 6)) if rng.random() < 0.25 else 0.0,
            tremor=float(rng.uniform(0.2, 1.0)) if rng.random() < 0.15 else 0.0,
            formant_scale=float(rng.uniform(0.85, 1.2))))
    return waveforms
