"""English readings of numbers (123 → one hundred twenty-three) and the rules that find them in chat. Pure.

``read_numbers_en`` rewrites every ASCII digit in a message; the order of its passes is the precedence:
dates, times, dotted groups (versions, IPs), hyphenated groups (phones), ordinals, percent ranges, ranges,
scores, percentages, money, k/m/b suffixes, then plain numbers. Plain integers are read by ``_token_en``:
meme numbers (233…, 666…, 888…) and ID-like strings are read digit by digit, 4-digit 1100–2099 as years.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_ASCII_DIGIT = re.compile("[0-9]")
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = (
    (10**18, "quintillion"),
    (10**15, "quadrillion"),
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
_MAX_WORD_DIGITS = 21  # longer digit strings are read digit by digit
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_MONTHS = (
    "", "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
)  # fmt: skip
_NUM_STR = re.compile(r"([+\-−]?)([0-9][0-9,]*)(?:\.([0-9]+))?")


def digits_en(s: str) -> str:
    """``"007"`` → ``"zero zero seven"`` (non-digits are dropped)."""
    return " ".join(_ONES[ord(c) - 48] for c in s if "0" <= c <= "9")


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest:
        words.append(_ONES[rest])
    return " ".join(words)


def _cardinal(n: int) -> str:
    if n < 0:
        return "minus " + _cardinal(-n)
    if n < 1000:
        return _below_1000(n) if n else "zero"
    if n >= 1000 * _SCALES[0][0]:
        return digits_en(str(n))
    words: list[str] = []
    for size, name in _SCALES:
        if n >= size:
            head, n = divmod(n, size)
            words.append(f"{_below_1000(head)} {name}")
    if n:
        words.append(_below_1000(n))
    return " ".join(words)


def number_to_en(n: int | str) -> str:
    """Read an integer or a decimal string: ``-3.5`` → ``minus three point five``; ``1,000`` → ``one thousand``.

    Raises ValueError for a string that is not ``[+-]digits[,digits][.digits]``.
    """
    if isinstance(n, int):
        return _cardinal(n)
    if not isinstance(n, str):
        raise TypeError(f"number_to_en expects int or str, got {type(n).__name__}")
    m = _NUM_STR.fullmatch(n.strip())
    if not m:
        raise ValueError(f"not a number: {n!r} (expected digits, optional sign, commas and decimal part)")
    sign, whole, frac = m.group(1), m.group(2).replace(",", ""), m.group(3)
    words = _qty_en(whole + (f".{frac}" if frac else ""))
    return ("minus " + words) if sign in ("-", "−") else words


def ordinal_en(n: int) -> str:
    """``21`` → ``twenty-first``, ``100`` → ``one hundredth``."""
    words = _cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _ORDINAL_WORDS:
        return head + _ORDINAL_WORDS[last]
    if last.endswith("y"):
        return head + last[:-1] + "ieth"
    return head + last + "th"


def year_en(n: int) -> str:
    """``1999`` → ``nineteen ninety-nine``, ``2005`` → ``two thousand five``, ``1905`` → ``nineteen oh five``."""
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009:
        return _cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{_cardinal(high)} hundred"
    if low < 10:
        return f"{_cardinal(high)} oh {_ONES[low]}"
    return f"{_cardinal(high)} {_cardinal(low)}"


def _qty_en(num: str) -> str:
    """A quantity (never digit by digit unless absurdly long): ``1,000.5`` → ``one thousand point five``."""
    whole, _, frac = num.replace(",", "").partition(".")
    head = digits_en(whole) if len(whole) > _MAX_WORD_DIGITS else _cardinal(int(whole))
    return f"{head} point {digits_en(frac)}" if frac else head


_MEME = re.compile(r"23{2,}|6{3,}|8{3,}")


def _is_round(s: str) -> bool:
    return len(s.rstrip("0")) <= 3


def _token_en(s: str) -> str:
    """A bare integer as chat means it; see the module docstring for the heuristics."""
    if "," in s:
        return _qty_en(s)
    if _MEME.fullmatch(s):
        return digits_en(s[:3])
    if len(s) >= 2 and s[0] == "0":
        return digits_en(s)
    if len(s) > 15 or (len(s) >= 5 and not _is_round(s)):
        return digits_en(s)
    n = int(s)
    if len(s) == 4 and 1100 <= n <= 2099:
        return year_en(n)
    return _cardinal(n)


_B = r"(?<![0-9])(?<![0-9][.,])"  # not inside a longer number
_INT = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"
_NUM = rf"(?:{_INT})(?:\.[0-9]+)?"
_SIGN = r"(?:(?<![A-Za-z0-9.])([-−]))?"

_DATE = re.compile(_B + r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})(?![0-9])")
_TIME = re.compile(r"(?<![0-9:])([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?(?![0-9]|:[0-9])")
_DOTTED = re.compile(_B + r"[0-9]+(?:\.[0-9]+){2,}(?![0-9])")
_HYPHENATED = re.compile(_B + r"[0-9]+(?:-[0-9]+){2,}(?![0-9])")
_ORDINAL = re.compile(_B + r"([0-9]{1,15})(st|nd|rd|th)(?![A-Za-z])", re.IGNORECASE)
_PCT_RANGE = re.compile(_B + rf"({_NUM})%?(?:-|\s*[~～]\s*)({_NUM})%")
_RANGE = re.compile(_B + rf"(?<![0-9]-)({_NUM})(?:-|\s*[~～]\s*)({_NUM})(?![0-9])(?![.,][0-9])(?!-[0-9])")
_SCORE = re.compile(_B + r"([0-9]+):([0-9]+)(?![0-9])(?!:[0-9])")
_PCT = re.compile(_SIGN + _B + rf"({_NUM})\s?%")
_MONEY = re.compile(_SIGN + rf"([$€£¥])\s?({_NUM})(?:([kKmMbB])(?![A-Za-z]))?")
_MONEY_AFTER = re.compile(_B + rf"({_NUM})\s?([$€£¥])")
_SUFFIX = re.compile(_SIGN + _B + rf"({_NUM})([kKmMbB])(?![A-Za-z])")
_PLAIN = re.compile(_SIGN + _B + rf"({_INT})(?:\.([0-9]+))?")
_ANY_DIGITS = re.compile(r"[0-9]+")

_CURRENCY = {  # symbol: (one, many, one cent, many cents)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yuan", "yuan", "", ""),
}
_SUFFIX_WORDS = {"k": "thousand", "m": "million", "b": "billion"}


def _minus(sign: str | None) -> str:
    return "minus " if sign else ""


def _money(sign: str | None, symbol: str, num: str, suffix: str | None) -> str:
    one, many, cent, cents = _CURRENCY[symbol]
    if suffix:
        return f"{_minus(sign)}{_qty_en(num)} {_SUFFIX_WORDS[suffix.lower()]} {many}"
    whole, _, frac = num.replace(",", "").partition(".")
    if (frac and (len(frac) > 2 or not cent)) or len(whole) > _MAX_WORD_DIGITS:
        return f"{_minus(sign)}{_qty_en(num)} {many}"
    units, subunits = int(whole), int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if units or not subunits:
        parts.append(f"{_cardinal(units)} {one if units == 1 else many}")
    if subunits:
        parts.append(f"{_cardinal(subunits)} {cent if subunits == 1 else cents}")
    return _minus(sign) + " and ".join(parts)


def _date(m: re.Match[str]) -> str:
    year, month, day = int(m.group(1)), int(m.group(3)), int(m.group(4))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return " ".join(_token_en(g) for g in (m.group(1), m.group(3), m.group(4)))
    return f"{_MONTHS[month]} {ordinal_en(day)}, {year_en(year)}"


def _time(m: re.Match[str]) -> str:
    hour, minute, second = int(m.group(1)), int(m.group(2)), m.group(3)
    words = _cardinal(hour) + (
        " o'clock" if minute == 0 and not second else f" oh {_ONES[minute]}" if minute < 10 else f" {_cardinal(minute)}"
    )
    return words + (f" {_cardinal(int(second))}" if second else "")


def _pad_sub(rx: re.Pattern[str], fn: Callable[[re.Match[str]], str], text: str) -> str:
    """``rx.sub(fn, text)``, with a space where the words would touch a letter or digit."""

    def repl(m: re.Match[str]) -> str:
        words = fn(m)
        s, e = m.start(), m.end()
        if s > 0 and text[s - 1].isalnum():
            words = " " + words
        if e < len(text) and text[e].isalnum():
            words += " "
        return words

    return rx.sub(repl, text)


def read_numbers_en(text: str) -> str:
    """Spell out every ASCII digit in ``text`` as English words."""
    passes: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
        (_DATE, _date),
        (_TIME, _time),
        (_DOTTED, lambda m: " point ".join(_qty_en(p) for p in m.group(0).split("."))),
        (_HYPHENATED, lambda m: ", ".join(digits_en(p) for p in m.group(0).split("-"))),
        (_ORDINAL, lambda m: ordinal_en(int(m.group(1)))),
        (_PCT_RANGE, lambda m: f"{_qty_en(m.group(1))} percent to {_qty_en(m.group(2))} percent"),
        (_RANGE, lambda m: f"{_range_part(m.group(1))} to {_range_part(m.group(2))}"),
        (_SCORE, lambda m: f"{_token_en(m.group(1))} to {_token_en(m.group(2))}"),
        (_PCT, lambda m: f"{_minus(m.group(1))}{_qty_en(m.group(2))} percent"),
        (_MONEY, lambda m: _money(m.group(1), m.group(2), m.group(3), m.group(4))),
        (_MONEY_AFTER, lambda m: _money(None, m.group(2), m.group(1), None)),
        (_SUFFIX, lambda m: f"{_minus(m.group(1))}{_qty_en(m.group(2))} {_SUFFIX_WORDS[m.group(3).lower()]}"),
        (_PLAIN, _plain),
        (_ANY_DIGITS, lambda m: digits_en(m.group(0))),
    )
    for rx, fn in passes:
        if _ASCII_DIGIT.search(text) is None:
            break
        text = _pad_sub(rx, fn, text)
    return text


def _range_part(num: str) -> str:
    return _qty_en(num) if "." in num else _token_en(num)


def _plain(m: re.Match[str]) -> str:
    sign, whole, frac = m.group(1), m.group(2), m.group(3)
    return _minus(sign) + (_qty_en(f"{whole}.{frac}") if frac else _token_en(whole))
