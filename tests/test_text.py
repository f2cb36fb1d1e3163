"""ishow.engine.f5.text: F5 vocab and text → tokens → ids.

Expected tokens in TABLE were produced by upstream ``f5_tts.model.utils.convert_char_to_pinyin`` (f5-tts 1.1.22,
rjieba 0.2.2, pypinyin 0.55.0) and cross-checked on the GPU machine.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ishow.engine.f5 import text as text_mod
from ishow.engine.f5.text import VOCAB_SIZE, load_vocab, text_byte_len, text_to_tokens, tokens_to_ids
from ishow.errors import ModelLoadError, WeightsMissingError

VOCAB_SHA256 = "4e173934be56219eb38759fa8d4c48132d5a34454f0c44abce409bcf6a07ec46"  # f5_tts 1.1.22 examples/vocab.txt

TABLE: list[tuple[str, list[str]]] = [
    ("你好", [" ", "ni2", " ", "hao3"]),
    ("你好世界", [" ", "ni2", " ", "hao3", " ", "shi4", " ", "jie4"]),
    (
        "我爱Python编程 and AI！",
        [" ", "wo3", " ", "ai4", " ", *"Python", " ", "bian1", " ", "cheng2", " ", *"and", " ", "A", "I", "！"],
    ),
    ("hello, world!", [*"hello", ",", " ", *"world", "!"]),
    ("Hi", ["H", "i"]),
    ("a;b", ["a", ",", "b"]),
    ("“quoted” ‘single’", ['"', *"quoted", '"', " ", "'", *"single", "'"]),
    ("2024年", ["2", "0", "2", "4", " ", "nian2"]),
    ("一个", [" ", "yi2", " ", "ge4"]),
    ("不是", [" ", "bu2", " ", "shi4"]),
    ("行不行", [" ", "xing2", " ", "bu4", " ", "xing2"]),
    ("重庆银行行长", [" ", "chong2", " ", "qing4", " ", "yin2", " ", "hang2", " ", "hang2", " ", "zhang3"]),
    ("你好ㄅ", [" ", "ni2", " ", "hao3", " ", "ㄅ"]),
    ("😀你好", ["😀", " ", "ni2", " ", "hao3"]),
    ("café", ["c", "a", "f", "é"]),
    ("I’m OK", ["I", "'", "m", " ", "O", "K"]),
    ("主播666", [" ", "zhu3", " ", "bo1", " ", "6", "6", "6"]),
    (
        "这个 skin 太帅了吧!!!",
        [" ", "zhe4", " ", "ge", " ", *"skin", " ", " ", "tai4", " ", "shuai4", " ", "le", " ", "ba", "!", "!", "!"],
    ),
    ("中文：English", [" ", "zhong1", " ", "wen2", "：", " ", *"English"]),
    ('他说:"好"', [" ", "ta1", " ", "shuo1", ":", '"', " ", "hao3", '"']),
    ("，。！？", ["，", "。", "！", "？"]),
    ("Привет", list("Привет")),
    ("UP主yyds", ["U", "P", " ", "zhu3", " ", "y", "y", "d", "s"]),
    ("x", ["x"]),
    ("", []),
    (" ", [" "]),
    ("a\tb", ["a", "\t", "b"]),
    ("吗", [" ", "ma"]),
    ("嗯嗯", [" ", "n2", " ", "n2"]),
    ("€5", ["€", "5"]),
]


@pytest.mark.parametrize(("text", "expected"), TABLE, ids=[repr(t) for t, _ in TABLE])
def test_text_to_tokens_matches_upstream(text: str, expected: list[str]) -> None:
    assert text_to_tokens(text) == expected


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    return load_vocab()


def test_packaged_vocab(vocab: dict[str, int]) -> None:
    assert len(vocab) == VOCAB_SIZE == 2545
    assert vocab[" "] == 0
    assert sorted(vocab.values()) == list(range(2545))
    data = (Path(text_mod.__file__).parent / "vocab.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == VOCAB_SHA256
    assert data.count(b"\n") == 2545


def test_ids_of_known_tokens(vocab: dict[str, int]) -> None:
    lines = (Path(text_mod.__file__).parent / "vocab.txt").read_text(encoding="utf-8").split("\n")
    tokens = text_to_tokens("你好, world")
    ids = tokens_to_ids(tokens, vocab)
    assert [lines[i] for i in ids] == tokens
    assert 0 not in ids[1:2]  # 'ni2' is known


def test_unknown_tokens_map_to_zero(vocab: dict[str, int]) -> None:
    tokens = text_to_tokens("😀a<b|`")
    assert tokens == ["😀", "a", "<", "b", "|", "`"]
    ids = tokens_to_ids(tokens, vocab)
    assert ids == [0, vocab["a"], 0, vocab["b"], 0, 0]  # emoji, '<', '|' and '`' are not in the F5 vocab
    assert tokens_to_ids([], vocab) == []
    assert tokens_to_ids(["no-such-token", " "], vocab) == [0, 0]


def test_text_byte_len() -> None:
    assert text_byte_len("") == 0
    assert text_byte_len("abc") == 3
    assert text_byte_len("你好") == 6
    assert text_byte_len("😀") == 4
    assert text_byte_len("\ud800") == 1  # lone surrogate counts as its replacement


def test_lone_surrogate_and_control_chars_do_not_crash(vocab: dict[str, int]) -> None:
    assert text_to_tokens("\ud800abc") == ["?", " ", "a", "b", "c"]
    tokens = text_to_tokens("a\x00b\n你\x1b")
    assert tokens[:4] == ["a", "\x00", "b", "\n"]
    assert tokens_to_ids(tokens, vocab)[1] == 0


def test_pinyin_realignment_when_readings_group_chars(monkeypatch: pytest.MonkeyPatch) -> None:
    """pypinyin returns a run of chars without readings as one item; upstream would IndexError on such a segment."""

    def fake_segmenter() -> Callable[[str], list[str]]:
        return lambda s: [s]

    def fake_pinyin() -> Callable[[str], list[str]]:
        table = {"你ㄅㄆ好": ["ni3", "ㄅㄆ", "hao3"], "ㄅ": ["ㄅ"], "ㄆ": ["ㄆ"], "你": ["ni3"], "好": ["hao3"]}
        return lambda s: table[s]

    monkeypatch.setattr(text_mod, "_segmenter", fake_segmenter)
    monkeypatch.setattr(text_mod, "_pinyin_fn", fake_pinyin)
    assert text_to_tokens("你ㄅㄆ好") == [" ", "ni3", " ", "ㄅ", " ", "ㄆ", " ", "hao3"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_gives_tokens_and_ids(s: str) -> None:
    vocab = load_vocab()
    tokens = text_to_tokens(s)
    assert all(isinstance(t, str) for t in tokens)
    ids = tokens_to_ids(tokens, vocab)
    assert len(ids) == len(tokens) and all(0 <= i < VOCAB_SIZE for i in ids)


def test_load_vocab_from_path(tmp_path: Path) -> None:
    p = tmp_path / "vocab.txt"
    p.write_text(" \na\nb\nni3\n", encoding="utf-8")
    assert load_vocab(p) == {" ": 0, "a": 1, "b": 2, "ni3": 3}
    p.write_bytes(b" \r\na\r\n")  # CRLF is read like upstream's text mode
    assert load_vocab(p) == {" ": 0, "a": 1}


def test_load_vocab_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match=r"missing\.txt.*ishow models fetch"):
        load_vocab(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b" \n\xe9\n")
    with pytest.raises(ModelLoadError, match="not UTF-8"):
        load_vocab(bad)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_vocab(empty)
    nospace = tmp_path / "nospace.txt"
    nospace.write_text("a\n \n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="single space"):
        load_vocab(nospace)


def test_import_is_lazy() -> None:
    code = (
        "import sys, ishow.engine.f5.text\n"
        "loaded = {'rjieba', 'pypinyin', 'torch'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_segment_readings_are_remembered_and_equal_the_plain_ones() -> None:
    from ishow.engine.f5 import text as T

    T._segment_readings.cache_clear()
    segs = ["你好", "主播", "行不行", "重庆", "銀行", "㐀", "你好"]
    got = [T._segment_readings(s) for s in segs]
    assert got == [tuple(T._readings(s)) for s in segs]
    info = T._segment_readings.cache_info()
    assert info.hits == 1 and info.misses == len(set(segs)) and info.maxsize == T.READINGS_CACHE
    # a whole message is tokenized the same with a warm cache
    first = T.text_to_tokens("这个游戏真的太好玩了，主播加油！hello 世界")
    assert T.text_to_tokens("这个游戏真的太好玩了，主播加油！hello 世界") == first
