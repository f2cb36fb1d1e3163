"""Chat text → what a TTS engine should read. Pure functions, stdlib only.

``normalize`` runs, in order:

1. control/format/surrogate/private-use characters out (line breaks and tabs become spaces);
2. width: full-width letters, digits and space → ASCII (ｈｅｌｌｏ１２３ → hello123), other decimal digits → ASCII;
   in Chinese text ，。！？；：（）～ are kept for prosody and other full-width symbols (％＄－．…) become ASCII;
   in English text all full-width and CJK punctuation becomes ASCII;
3. emoji (pictographs, variation selectors, ZWJ, keycaps, tags), links → ``link_word`` (链接 / link),
   Bilibili stickers ``[doge]``/``[藏狗]``/``[tv_doge]`` (≤ 6 characters, or any length up to 16 with ``_``)
   and ``:shortcode:`` emotes out, and spam collapsed (4) — repeated until stable, because removing one can
   reveal another; run again after step 5, so ``normalize`` is stable on its own output;
4. spam: any letter/CJK unit of 1–4 characters repeated 4+ times → 3 times (哈哈哈哈 → 哈哈哈,
   hahahaha → hahaha, wwwww → www, 好好好好好好 → 好好好), l+o+l+ → lol, ???? → ??, !!!! → !, ?!?! → ?!,
   。。。 → 。, ……… → ……, ..... → ...; Chinese numerals are exempt so the result is stable on a second pass;
5. numbers spelled out in the message's language (``numbers_zh`` / ``numbers_en`` document their rules):
   meme numbers read digit by digit (233333 → 233 → 二三三, 66666 → 六六六, 88888 → 八八八);
6. whitespace collapsed and stripped.
"""

from __future__ import annotations

import re
import unicodedata

from ishow.policy.numbers_en import read_numbers_en
from ishow.policy.numbers_zh import read_numbers_zh

__all__ = ["detect_lang", "normalize"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_LINK_WORDS = {"zh": "链接", "en": "link"}

_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # mahjong, cards, enclosed, regional indicators, pictographs, skin tones
    "\u2600-\u27bf"  # misc symbols, dingbats
    "\u2b00-\u2bff"  # arrows, ⭐ ⭕
    "\u231a\u231b\u2328\u23cf\u23e9-\u23f3\u23f8-\u23fa"
    "\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2934\u2935"
    "\u3030\u303d\u3297\u3299"
    "\ufe00-\ufe0f\u200d\u20e3"  # variation selectors, zero-width joiner, keycap
    "\U000e0020-\U000e007f"  # tag characters (flag sequences)
    "]+"
)
_TLDS = (
    "com", "net", "org", "cn", "tv", "io", "me", "gg", "co", "uk", "jp", "info", "xyz", "app", "dev", "ly", "be",
    "top", "cc", "live", "link", "moe", "fm", "to", "us", "ru", "de", "fr", "kr", "tw", "hk", "edu", "gov", "site",
    "online", "club", "vip", "shop",
)  # fmt: skip
_URL_TAIL = r"[\x21-\x7e]"
_HOST = r"(?<![A-Za-z0-9.@-])(?:[A-Za-z0-9-]+\.)+"
_URL = re.compile(  # scheme or www.; host with a path ("b23.tv/x"); bare host with a known TLD ("bilibili.com")
    rf"(?:https?://|www\.){_URL_TAIL}*"
    rf"|{_HOST}[A-Za-z][A-Za-z0-9-]*(?::[0-9]+)?/{_URL_TAIL}*"
    rf"|{_HOST}(?:{'|'.join(_TLDS)})(?![A-Za-z0-9-])(?::[0-9]+)?",
    re.IGNORECASE,
)
_URL_TRAILING = ".,;:!?)]}'\""
_STICKER = re.compile(r"\[([\w-]{1,16})\]")
_SHORTCODE = re.compile(r"(?<![A-Za-z0-9]):(?=[0-9_+-]*[A-Za-z])[A-Za-z0-9_+-]{2,32}:(?![A-Za-z0-9])")

_RUN = re.compile(r"([^\W\d_]{1,4}?)\1{3,}")
_CN_NUMERALS = frozenset("零一二三四五六七八九十百千万亿两点负")
_LOL = re.compile(r"(?<![A-Za-z])l+o+l+(?![A-Za-z])", re.IGNORECASE)
_QE = re.compile(r"[?？!！]{2,}")
_PUNCT_RUN = re.compile(r"([。，,、；;~～*#=+_-])\1+")
_ELLIPSIS = re.compile(r"…{3,}")
_DOTS = re.compile(r"\.{4,}")

_ZH_KEEP = frozenset("，！？；：（）～")
_EN_PUNCT = str.maketrans(
    {"。": ". ", "、": ", ", "「": '"', "」": '"', "『": '"', "』": '"', "《": '"', "》": '"', "【": "(", "】": ")",
     "〈": '"', "〉": '"', "…": "..."}
)  # fmt: skip


def detect_lang(text: str) -> str:
    """``"zh"`` when ``text`` has a CJK ideograph, else ``"en"``."""
    return "zh" if _CJK.search(text) else "en"


def _lang(lang: str | None, text: str) -> str:
    code = (lang or "").strip().lower()
    if code.startswith("zh") or code.startswith("cmn"):
        return "zh"
    if code.startswith("en"):
        return "en"
    return detect_lang(text)


def _strip_controls(text: str) -> str:
    if text.isprintable():  # no Cc/Cf/Cs/Co/Zl/Zp in it (the usual case): nothing to strip
        return text
    return _strip_each(text)


def _strip_each(text: str) -> str:
    """The per-character rule: line/paragraph separators and control characters → space; format, surrogate and
    private-use characters dropped."""
    out: list[str] = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif cat not in ("Cf", "Cs", "Co"):
            out.append(ch)
    return "".join(out)


# characters _fold_each changes: fullwidth ASCII, the ideographic space, fullwidth ¥£¢, non-ASCII decimal digits
_WIDE = re.compile("[\uff01-\uff5e\u3000\uffe0\uffe1\uffe5]|(?![0-9])\\d")


def _half_width(text: str, lang: str) -> str:
    if _WIDE.search(text) is not None:  # else (the usual case) nothing to fold
        text = _fold_each(text, lang)
    return text.translate(_EN_PUNCT) if lang == "en" else text


def _fold_each(text: str, lang: str) -> str:
    """The per-character rule: fullwidth ASCII → ASCII (Chinese punctuation kept in zh), the ideographic space →
    space, fullwidth ¥£¢ → ¥£¢, other decimal digits → 0–9."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E and (lang == "en" or ch not in _ZH_KEEP):
            out.append(chr(code - 0xFEE0))
        elif ch == "\u3000":
            out.append(" ")
        elif ch in "￥￡￠":
            out.append({"￥": "¥", "￡": "£", "￠": "¢"}[ch])
        elif not ("0" <= ch <= "9") and unicodedata.category(ch) == "Nd":
            out.append(str(unicodedata.decimal(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _replace_urls(text: str, word: str) -> str:
    def repl(m: re.Match[str]) -> str:
        url = m.group(0)
        kept = url.rstrip(_URL_TRAILING)
        tail = url[len(kept) :]
        if kept.lower() == "www":
            return url  # "www." is laughter and a full stop
        s, e = m.start(), m.start() + len(kept)
        left = " " if s > 0 and text[s - 1].isascii() and text[s - 1].isalnum() else ""
        right = " " if e < len(text) and text[e].isascii() and text[e].isalnum() else ""
        return f"{left}{word}{right}{tail}"

    return _URL.sub(repl, text)


def _sticker(m: re.Match[str]) -> str:
    token = m.group(1)
    if len(token) > 6 and "_" not in token:
        return m.group(0)
    return ""


def _run(m: re.Match[str]) -> str:
    unit = m.group(1)
    return m.group(0) if any(c in _CN_NUMERALS for c in unit) else unit * 3


def _lol(m: re.Match[str]) -> str:
    s = m.group(0)
    if len(s) <= 3:
        return s
    return "LOL" if s.isupper() else "lol"


def _qe(m: re.Match[str]) -> str:
    s = m.group(0)
    full = s[0] in "？！"
    q, e = ("？", "！") if full else ("?", "!")
    has_q, has_e = any(c in "?？" for c in s), any(c in "!！" for c in s)
    if has_q and has_e:
        return q + e
    return q * 2 if has_q else e


def _collapse(text: str) -> str:
    text = _RUN.sub(_run, text)
    text = _LOL.sub(_lol, text)
    text = _QE.sub(_qe, text)
    text = _PUNCT_RUN.sub(r"\1", text)
    text = _ELLIPSIS.sub("……", text)
    return _DOTS.sub("...", text)


def _tidy(text: str, word: str) -> str:
    """Emoji, links, emotes out and spam collapsed, repeated: removing one can reveal another."""
    for _ in range(4):
        before = text
        text = _EMOJI.sub("", text)
        text = _replace_urls(text, word)
        text = _STICKER.sub(_sticker, text)
        text = _SHORTCODE.sub("", text)
        text = _collapse(text)
        if text == before:
            break
    return text


def normalize(text: str, lang: str | None = None, *, link_word: str | None = None) -> str:
    """What a TTS engine should read for chat ``text``. Never raises for a ``str``.

    ``lang``: ``"zh"``/``"en"`` (``zh-CN``, ``en-US`` … accepted), else detected from the whole text; numbers
    are read in that language and mixed zh/en text is kept (我有3个apple → 我有三个apple).
    ``link_word``: what a link is read as (default 链接 / link).
    """
    text = _strip_controls(text)
    code = _lang(lang, text)
    word = _LINK_WORDS[code] if link_word is None else link_word
    text = _half_width(text, code)
    text = _tidy(text, word)
    text = read_numbers_zh(text) if code == "zh" else read_numbers_en(text)
    text = _tidy(text, word)  # spelled-out numbers can complete an emote: "[0]" → "[零]"
    return " ".join(text.split())
