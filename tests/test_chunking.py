"""Long text → chunks within a byte budget (Chinese and English), and the crossfade that joins their audio."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ishow.engine.chunking import ChunkPlan, LengthBudget, crossfade_join, split_text, utf8_len


def squash(s: str) -> str:
    return "".join(s.split())


def test_short_text_is_one_chunk() -> None:
    assert split_text("  主播晚上好！ ", 90, 30) == ["主播晚上好！"]
    assert split_text("", 90) == []


def test_sentences_first_then_clauses_then_words() -> None:
    text = "Hello there, version 3.5 is out. It works! Does it? 主播你好，今天玩什么游戏？我们一起看看吧。"
    chunks = split_text(text, 60)
    assert chunks == ["Hello there, version 3.5 is out. It works! Does it?", "主播你好，今天玩什么游戏？",
                      "我们一起看看吧。"]  # fmt: skip
    # a sentence over the budget is cut at its clause marks, not mid-word
    zh = "我们今天一起来看看这个游戏，它的画面非常漂亮，玩法也很有意思，大家觉得怎么样？"
    assert split_text(zh, 45) == ["我们今天一起来看看这个游戏，", "它的画面非常漂亮，", "玩法也很有意思，",
                                  "大家觉得怎么样？"]  # fmt: skip
    en = "one two three four five six seven eight nine ten eleven twelve"
    assert all(" " not in c[:1] and c.split()[-1] in en.split() for c in split_text(en, 20))


def test_first_chunk_is_short_on_purpose_when_the_text_is_long() -> None:
    text = "第一句话很短。" + "后面还有很多很多的内容需要继续说下去，" * 10
    chunks = split_text(text, 120, 30)
    assert chunks[0] == "第一句话很短。"
    assert all(utf8_len(c) <= 120 for c in chunks)


def test_text_without_any_boundary_is_cut_between_characters() -> None:
    chunks = split_text("啊" * 100, 30, 12)
    assert [len(c) for c in chunks] == [4] + [10] * 9 + [6]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab cd，。！?,. 你好世界\n")), min_size=1, max_size=400),
    st.integers(4, 120),
    st.one_of(st.none(), st.integers(4, 60)),
)
def test_chunks_keep_the_text_and_the_budget(text: str, max_bytes: int, first: int | None) -> None:
    chunks = split_text(text, max_bytes, first)
    if re.search(r"\w", text):
        words = re.findall(r"\w", text)
        assert re.findall(r"\w", "".join(chunks)) == words  # every letter/character, in order
    else:  # only punctuation: nothing to say; whatever is kept comes from the text
        assert set("".join(chunks)) <= set(text)
    assert all(c and c == c.strip() for c in chunks)
    assert all(utf8_len(c) <= max_bytes for c in chunks)
    assert all(re.search(r"\w", c) for c in chunks[1:])  # no chunk of only punctuation after the first


def test_plan_from_budget() -> None:
    plan = ChunkPlan.for_budget(LengthBudget(bytes_per_second=10.0, max_bytes=100))
    assert (plan.target, plan.first) == (100, 30)  # 12 s would be 120 bytes: capped by the engine's max
    plan = ChunkPlan.for_budget(LengthBudget(bytes_per_second=10.0, max_bytes=1000))
    assert (plan.target, plan.first) == (120, 30)


def test_crossfade_join_overlaps_each_seam() -> None:
    a = np.ones(2000, dtype=np.float32)
    b = np.ones(3000, dtype=np.float32)
    out = crossfade_join([a, b], 24000, fade_s=0.01)  # 240 samples
    assert len(out) == 2000 + 3000 - 240
    assert np.all(out <= np.sqrt(2) + 1e-6) and np.all(out >= 1.0 - 1e-6)  # equal power: no dip at the seam
    assert len(crossfade_join([a, np.zeros(0, np.float32), b[:10]], 24000)) == 2000  # short chunk: short overlap
    assert len(crossfade_join([], 24000)) == 0


def test_budget_must_hold_a_character() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        split_text("hello", 2)
