"""ishow.policy.normalize: chat text → what a TTS engine reads. Table-driven, plus properties."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ishow.policy.normalize import _EMOJI, _replace_urls, detect_lang, normalize
from ishow.policy.numbers_en import number_to_en, ordinal_en, year_en
from ishow.policy.numbers_zh import number_to_zh

# (input, lang, expected); lang None = detected from the text.
CASES: list[tuple[str, str | None, str]] = [
    # --- links
    ("看这个https://b23.tv/abc主播", None, "看这个链接主播"),
    ("see https://example.com/x?y=1.", None, "see link."),
    ("www.bilibili.com", "zh", "链接"),
    ("bilibili.com好", None, "链接好"),
    ("看 www.bilibili.com/video/BV1xx 哈哈哈哈哈", None, "看 链接 哈哈哈"),
    ("(see http://x.io/a)", None, "(see link)"),
    ("seehttp://x.io now", None, "see link now"),
    ("open file.txt and node.js", None, "open file.txt and node.js"),
    # --- emotes and emoji
    ("[doge][藏狗]主播好", None, "主播好"),
    ("主播[tv_doge]好", None, "主播好"),
    ("[热词系列_知识增加]学到了", None, "学到了"),
    ("[this is a long note]", None, "[this is a long note]"),
    ("[我觉得这个主播很好看]", None, "[我觉得这个主播很好看]"),
    (":Kappa: nice :smile:", None, "nice"),
    ("key:value:other", None, "key:value:other"),
    ("好😂👍🏻👨\u200d👩\u200d👧 🇨🇳", None, "好"),
    ("nice ❤️ stream ✨", None, "nice stream"),
    ("1️⃣ first", None, "one first"),
    # --- laughter and spam
    ("哈哈哈哈哈", None, "哈哈哈"),
    ("哈哈哈", None, "哈哈哈"),
    ("呵呵呵呵", None, "呵呵呵"),
    ("好好好好好好", None, "好好好"),
    ("加油加油加油加油加油", None, "加油加油加油"),
    ("hahahaha", None, "hahaha"),
    ("loooool", None, "lol"),
    ("LOOOOOL", None, "LOL"),
    ("wwwww", None, "www"),
    ("sooooo good", None, "sooo good"),
    ("主播233333", None, "主播二三三"),
    ("233", "zh", "二三三"),
    ("主播66666", None, "主播六六六"),
    ("666个", "zh", "六百六十六个"),
    ("88888", "zh", "八八八"),
    ("88", "zh", "八八"),
    ("233333 66666", "en", "two three three six six six"),
    ("主播？？？？？？", None, "主播？？"),
    ("why??????", None, "why??"),
    ("好！！！！！", None, "好！"),
    ("ok!!!!!", None, "ok!"),
    ("what?!?!?!", None, "what?!"),
    ("好。。。。", None, "好。"),
    ("好……………", None, "好……"),
    ("等等…", None, "等等…"),
    ("wait.....what… ok", None, "wait...what... ok"),
    ("好~~~~~", None, "好~"),
    # --- width, whitespace, control characters
    ("ｈｅｌｌｏ", None, "hello"),
    ("１２３", "zh", "一百二十三"),
    ("主播，你好！", None, "主播，你好！"),
    ("你好？（测试）；好：", None, "你好？（测试）；好："),
    ("Ｈｅｌｌｏ，ｗｏｒｌｄ！", None, "Hello,world!"),
    ("hi。 ok、", "en", "hi. ok,"),
    ("  a \t b\n\nc  ", None, "a b c"),
    ("主播\u3000好", None, "主播 好"),
    ("a\x00b\u200bc\ufeffd", None, "a bcd"),
    ("\u202eevil\u202c", None, "evil"),
    ("", None, ""),
    ("   ", None, ""),
    # --- mixed zh/en
    ("主播今天玩什么game", None, "主播今天玩什么game"),
    ("我有3个apple", None, "我有三个apple"),
    ("这把1v1", None, "这把一v一"),
    ("1v1", "en", "one v one"),
    # --- zh numbers
    ("123", "zh", "一百二十三"),
    ("10", "zh", "十"),
    ("110", "zh", "一百一十"),
    ("1005", "zh", "一千零五"),
    ("1010", "zh", "一千零一十"),
    ("20000", "zh", "两万"),
    ("12000", "zh", "一万两千"),
    ("100000", "zh", "十万"),
    ("10100", "zh", "一万零一百"),
    ("200000000", "zh", "两亿"),
    ("1000000000000", "zh", "一万亿"),
    ("1,000", "zh", "一千"),
    ("12,345", "zh", "一万两千三百四十五"),
    ("我有2个苹果", None, "我有两个苹果"),
    ("第2个", None, "第二个"),
    ("第3", "zh", "第三"),
    ("第2名", "zh", "第二名"),
    ("2月2号", "zh", "二月二号"),
    ("2分钟", "zh", "两分钟"),
    ("3.5", "zh", "三点五"),
    ("0.5", "zh", "零点五"),
    ("10.05", "zh", "十点零五"),
    ("50%", "zh", "百分之五十"),
    ("-5%", "zh", "负百分之五"),
    ("3-5%", "zh", "百分之三到百分之五"),
    ("¥30", "zh", "三十元"),
    ("￥30", "zh", "三十元"),
    ("¥2", "zh", "两元"),
    ("¥5.50", "zh", "五点五元"),
    ("30元", "zh", "三十元"),
    ("30块", "zh", "三十块"),
    ("$5", "zh", "五美元"),
    ("€3", "zh", "三欧元"),
    ("2008年", "zh", "二零零八年"),
    ("2020-2024年", "zh", "二零二零到二零二四年"),
    ("2024-05-01", "zh", "二零二四年五月一日"),
    ("2024/5/1", "zh", "二零二四年五月一日"),
    ("2024年5月1日", "zh", "二零二四年五月一日"),
    ("5月1日", "zh", "五月一日"),
    ("05月01日", "zh", "五月一日"),
    ("12:30", "zh", "十二点三十分"),
    ("8:05", "zh", "八点零五分"),
    ("2:30", "zh", "两点三十分"),
    ("8:00", "zh", "八点"),
    ("１２：３０", "zh", "十二点三十分"),
    ("3-5", "zh", "三到五"),
    ("2-3个", "zh", "两到三个"),
    ("3:2", "zh", "三比二"),
    ("-5", "zh", "负五"),
    ("温度-5度", None, "温度负五度"),
    ("007", "zh", "零零七"),
    ("12345", "zh", "一二三四五"),
    ("12345元", "zh", "一万两千三百四十五元"),
    ("13812345678", "zh", "一三八一二三四五六七八"),
    ("138-1234-5678", "zh", "一三八 一二三四 五六七八"),
    ("10w", "zh", "十万"),
    ("1.5w", "zh", "一点五万"),
    ("2w", "zh", "两万"),
    ("3k", "zh", "三千"),
    ("1.5k", "zh", "一千五百"),
    ("v1.2.3", "zh", "v一点二点三"),
    # --- en numbers
    ("123", "en", "one hundred twenty-three"),
    ("0 11 20 21 99 101", "en", "zero eleven twenty twenty-one ninety-nine one hundred one"),
    ("1005", "en", "one thousand five"),
    ("3.5", "en", "three point five"),
    ("-3.5", "en", "minus three point five"),
    ("-5 degrees", "en", "minus five degrees"),
    ("COVID-19", "en", "COVID-nineteen"),
    ("50%", "en", "fifty percent"),
    ("2.5%", "en", "two point five percent"),
    ("$5", "en", "five dollars"),
    ("$1", "en", "one dollar"),
    ("$5.50", "en", "five dollars and fifty cents"),
    ("$1.01", "en", "one dollar and one cent"),
    ("$0.99", "en", "ninety-nine cents"),
    ("5$", "en", "five dollars"),
    ("¥30", "en", "thirty yuan"),
    ("€3", "en", "three euros"),
    ("£3.50", "en", "three pounds and fifty pence"),
    ("$2.5k", "en", "two point five thousand dollars"),
    ("1st 2nd 3rd 21st", "en", "first second third twenty-first"),
    ("11th 12th 20th 112th", "en", "eleventh twelfth twentieth one hundred twelfth"),
    ("1999", "en", "nineteen ninety-nine"),
    ("in 2024", "en", "in twenty twenty-four"),
    ("2000 2005 2010", "en", "two thousand two thousand five twenty ten"),
    ("1905 1100", "en", "nineteen oh five eleven hundred"),
    ("3000", "en", "three thousand"),
    ("12:30", "en", "twelve thirty"),
    ("8:05", "en", "eight oh five"),
    ("8:00", "en", "eight o'clock"),
    ("2024-05-01", "en", "May first, twenty twenty-four"),
    ("1,000", "en", "one thousand"),
    ("1,234,567", "en", "one million two hundred thirty-four thousand five hundred sixty-seven"),
    ("10k", "en", "ten thousand"),
    ("2.5m", "en", "two point five million"),
    ("3-5 apples", "en", "three to five apples"),
    ("I won 3:2", "en", "I won three to two"),
    ("007", "en", "zero zero seven"),
    ("12345", "en", "one two three four five"),
    ("50000", "en", "fifty thousand"),
    ("call 555-123-4567", "en", "call five five five, one two three, four five six seven"),
    ("v1.2.3", "en", "v one point two point three"),
    ("3pm", "en", "three pm"),
]


def test_table_has_at_least_100_cases() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize(("text", "lang", "expected"), CASES)
def test_normalize(text: str, lang: str | None, expected: str) -> None:
    assert normalize(text, lang) == expected


@pytest.mark.parametrize(("text", "lang", "expected"), CASES)
def test_normalize_is_stable_on_its_output(text: str, lang: str | None, expected: str) -> None:
    assert normalize(expected, lang or detect_lang(text)) == expected


def test_link_word_and_lang_aliases() -> None:
    assert normalize("看 https://x.com/a 吧", link_word="网址") == "看 网址 吧"
    assert normalize("see https://x.com/a", link_word="a link") == "see a link"
    assert normalize("3", "zh-CN") == "三"
    assert normalize("3", "en-US") == "three"
    assert normalize("3", "ja") == "three"  # unknown: detected


@pytest.mark.parametrize(
    ("text", "lang"),
    [("主播好", "zh"), ("hello", "en"), ("ｈｅｌｌｏ", "en"), ("ありがとう", "en"), ("", "en"), ("a 中", "zh")],
)
def test_detect_lang(text: str, lang: str) -> None:
    assert detect_lang(text) == lang


@pytest.mark.parametrize(
    ("n", "zh"),
    [
        (0, "零"),
        (2, "二"),
        (10, "十"),
        (15, "十五"),
        (123, "一百二十三"),
        (200, "二百"),
        (2000, "两千"),
        (1005, "一千零五"),
        (20000, "两万"),
        (100010, "十万零一十"),
        (150000, "十五万"),
        (100_005_000, "一亿零五千"),
        (150_000_000, "一亿五千万"),
        (2 * 10**12, "两万亿"),
        (-5, "负五"),
        ("3.14", "三点一四"),
        ("-0.5", "负零点五"),
        ("1,000", "一千"),
    ],
)
def test_number_to_zh(n: int | str, zh: str) -> None:
    assert number_to_zh(n) == zh


@pytest.mark.parametrize(
    ("n", "en"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (123, "one hundred twenty-three"),
        (1_000_000, "one million"),
        (2_000_000_001, "two billion one"),
        (3 * 10**12 + 7, "three trillion seven"),
        (-42, "minus forty-two"),
        ("3.14", "three point one four"),
        ("-0.5", "minus zero point five"),
        ("1,000", "one thousand"),
    ],
)
def test_number_to_en(n: int | str, en: str) -> None:
    assert number_to_en(n) == en


def test_ordinals_and_years() -> None:
    assert [ordinal_en(n) for n in (1, 2, 3, 4, 5, 8, 9, 12, 30, 101)] == [
        "first", "second", "third", "fourth", "fifth", "eighth", "ninth", "twelfth", "thirtieth", "one hundred first",
    ]  # fmt: skip
    assert year_en(1999) == "nineteen ninety-nine"
    assert year_en(2009) == "two thousand nine"
    assert year_en(1900) == "nineteen hundred"


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1e5", "--1"])
def test_number_functions_reject_non_numbers(bad: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        number_to_zh(bad)
    with pytest.raises(ValueError, match="not a number"):
        number_to_en(bad)


def test_huge_digit_strings_are_read_digit_by_digit() -> None:
    assert normalize("9" * 5000, "zh") == "九" * 5000
    assert normalize("1" * 30, "en") == " ".join(["one"] * 30)
    assert number_to_zh("1" * 30) == "一" * 30


# --- properties

_BAD_CATEGORIES = ("Cc", "Cf", "Cs", "Co")


@settings(max_examples=500, deadline=None)
@given(st.text(), st.sampled_from([None, "zh", "en"]))
def test_never_raises_and_output_is_clean(text: str, lang: str | None) -> None:
    out = normalize(text, lang)
    assert isinstance(out, str)
    assert out == out.strip()
    assert "  " not in out
    assert not _EMOJI.search(out)
    assert not any(unicodedata.category(c) in _BAD_CATEGORIES for c in out)
    assert not any("0" <= c <= "9" for c in out)
    # Numbers expand (7777 → "seven thousand seven hundred seventy-seven": 42 chars for 4).
    assert len(out) <= 12 * len(text) + 20


_PIECES = (*"abhlowLOW哈好主播个年月点第二0123456789 .,-:%$¥?!！？。…~[]_/😂１ｈ％", "\u200d", "\n")
_CHATTY = st.lists(st.sampled_from([*_PIECES, "http://", "www.", ".com"]), max_size=30).map("".join)


@settings(max_examples=500, deadline=None)
@given(_CHATTY, st.sampled_from(["zh", "en"]))
def test_no_links_left_and_stable_on_its_output(text: str, lang: str) -> None:
    out = normalize(text, lang)
    assert _replace_urls(out, "LINK") == out  # nothing left that reads as a link
    assert "http://" not in out.lower() and "https://" not in out.lower()
    assert normalize(out, lang) == out


_PLAIN = st.text(alphabet=st.sampled_from([*"abcdehlowxyzABC哈好主播我有个年月点第0123456789 "]), max_size=40)


@settings(max_examples=500, deadline=None)
@given(_PLAIN)
def test_stable_on_letters_cjk_digits_with_detection(text: str) -> None:
    out = normalize(text)
    assert normalize(out) == out


def test_fast_paths_of_the_per_character_passes_change_nothing() -> None:
    # _strip_controls / _half_width skip their per-character rules when no character needs them; the result must
    # be what the rules give, on text of every kind (ASCII, CJK, fullwidth, other digits, controls, spaces)
    import random

    from ishow.policy.normalize import _EN_PUNCT, _fold_each, _half_width, _strip_controls, _strip_each

    pools = ["hello world 123,.!?", "主播晚上好，今天玩什么。", "ＡＢＣ１２３！？　", "٣٤५६",
             "\x00\x1f\u200b\u2028\ue000", "￥￡￠\xa0", "😀é"]  # fmt: skip
    rng = random.Random(3)
    for _ in range(3000):
        text = "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 12)))
        assert _strip_controls(text) == _strip_each(text), repr(text)
        assert _half_width(text, "zh") == _fold_each(text, "zh"), repr(text)
        assert _half_width(text, "en") == _fold_each(text, "en").translate(_EN_PUNCT), repr(text)
