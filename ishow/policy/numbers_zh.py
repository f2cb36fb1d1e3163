"""Chinese readings of numbers (123 → 一百二十三) and the rules that find them in chat. Pure.

``read_numbers_zh`` rewrites every ASCII digit in a message; the order of its passes is the precedence:
dates, times, dotted groups (versions, IPs), hyphenated groups (phones), percent ranges, ranges, scores (3:2 →
三比二), percentages, money, k/w/m suffixes, then plain numbers. Plain integers are read by ``_token_zh``:

* 4 digits before 年 → digit by digit (2008年 → 二零零八年);
* meme numbers 233…/666…/888…/88 → 二三三/六六六/八八八/八八 (unless a measure word follows);
* a leading 0, more than 16 digits, or 5+ digits that are not "round" (more than 3 significant digits:
  12345, 13812345678, room numbers) → digit by digit, unless a measure word or unit follows (12345元);
* 2 before a measure word reads 两 (两个, 两块, 两点), but never after 第 (第二个);
* otherwise the full reading; a leading 2 before 千/万/亿 is 两 (两千, 两万, 一万两千), elsewhere 二 (二百, 二十).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

_ASCII_DIGIT = re.compile("[0-9]")
_DIGITS = "零一二三四五六七八九"
_MAX_WORD_DIGITS = 20  # longer digit strings are read digit by digit
_NUM_STR = re.compile(r"([+\-−]?)([0-9][0-9,]*)(?:\.([0-9]+))?")

# Measure words and units: 2 before them reads 两, and a long number before them is a quantity.
_LIANG = (
    "个", "块", "只", "次", "位", "件", "本", "张", "天", "岁", "条", "杯", "瓶", "把", "台", "部", "种",
    "名", "句", "遍", "首", "局", "场", "盘", "颗", "双", "对", "套", "份", "点", "小时", "分钟", "周",
    "星期", "年", "斤", "公斤", "米", "倍", "人", "袋", "箱", "趟", "回", "下", "声", "眼", "口", "元",
    "千", "万", "亿", "辆", "支", "根", "层楼",
)  # fmt: skip
_QTY = (*_LIANG, "角", "毛", "分", "百", "秒", "%", "克", "字", "粉", "票", "楼", "层", "号")
_CLOCK = ("月", "日", "号", "点", "时", "分", "秒")  # 05月 → 五月, 08点 → 八点


def digits_zh(s: str) -> str:
    """``"007"`` → ``"零零七"`` (non-digits are dropped)."""
    return "".join(_DIGITS[ord(c) - 48] for c in s if "0" <= c <= "9")


def _section(n: int, lead: bool) -> str:
    """0 < n < 10000; ``lead``: first section of the number, where 10–19 read 十… rather than 一十…."""
    out: list[str] = []
    zero = False
    for size, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // size % 10
        if d == 0:
            zero = zero or bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        if d == 1 and unit == "十" and lead and not out:
            digit = ""
        elif d == 2 and unit == "千":
            digit = "两"
        else:
            digit = _DIGITS[d]
        out.append(digit + unit)
    return "".join(out)


def _int_zh(n: int, lead: bool = True) -> str:
    if n < 0:
        return "负" + _int_zh(-n, lead)
    if n < 10000:
        return _section(n, lead) if n else "零"
    for size, unit in ((10**8, "亿"), (10**4, "万")):
        if n >= size:
            high, low = divmod(n, size)
            out = ("两" if high == 2 else _int_zh(high, lead)) + unit
            if low:
                out += ("零" if low < size // 10 else "") + _int_zh(low, lead=False)
            return out
    raise AssertionError("unreachable")  # pragma: no cover


def _qty_zh(num: str) -> str:
    """A quantity (never digit by digit unless absurdly long): ``1,000.5`` → ``一千点五``."""
    whole, _, frac = num.replace(",", "").partition(".")
    head = digits_zh(whole) if len(whole) > _MAX_WORD_DIGITS else _int_zh(int(whole))
    return f"{head}点{digits_zh(frac)}" if frac else head


def number_to_zh(n: int | str) -> str:
    """Read an integer or a decimal string: ``-3.14`` → ``负三点一四``; ``20000`` → ``两万``; ``1005`` → ``一千零五``.

    Raises ValueError for a string that is not ``[+-]digits[,digits][.digits]``.
    """
    if isinstance(n, int):
        return _int_zh(n)
    if not isinstance(n, str):
        raise TypeError(f"number_to_zh expects int or str, got {type(n).__name__}")
    m = _NUM_STR.fullmatch(n.strip())
    if not m:
        raise ValueError(f"not a number: {n!r} (expected digits, optional sign, commas and decimal part)")
    sign, whole, frac = m.group(1), m.group(2).replace(",", ""), m.group(3)
    words = _qty_zh(whole + (f".{frac}" if frac else ""))
    return ("负" + words) if sign in ("-", "−") else words


_MEME = re.compile(r"23{2,}|6{3,}|8{3,}|88")


def _token_zh(s: str, before: str, after: str) -> str:
    """A bare integer as chat means it; ``before``/``after``: the text around it. See the module docstring."""
    if "," in s:
        return _qty_zh(s)
    if s == "2" and not before.endswith("第") and after.startswith(_LIANG):
        return "两"
    qty = after.startswith(_QTY)
    if len(s) == 4 and after.startswith("年"):
        return digits_zh(s)
    if len(s) <= 2 and after.startswith(_CLOCK):
        return _int_zh(int(s))
    if not qty and _MEME.fullmatch(s):
        return digits_zh(s[:3])
    if (len(s) >= 2 and s[0] == "0") or len(s) > 16 or (len(s) >= 5 and len(s.rstrip("0")) > 3 and not qty):
        return digits_zh(s)
    return _int_zh(int(s))


def _with_unit(num: str, unit: str) -> str:
    """``2`` + 万 → 两万, ``1.5`` + 万 → 一点五万."""
    return ("两" if num == "2" else _qty_zh(num)) + unit


def _suffixed(num: str, suffix: str) -> str:
    """``10k`` → 一万, ``1.5k`` → 一千五百, ``10w`` → 十万, ``2.5m`` → 两百五十万."""
    s = suffix.lower()
    if s in ("w", "万"):
        return _with_unit(num, "万")
    if s in ("千", "亿"):
        return _with_unit(num, s)
    plain = num.replace(",", "")
    if len(plain) > 12:
        return _qty_zh(num) + ("千" if s == "k" else "百万")
    value = Decimal(plain) * (1000 if s == "k" else 1_000_000)
    if value == value.to_integral_value():
        return _int_zh(int(value))
    return _qty_zh(num) + ("千" if s == "k" else "百万")


_CURRENCY = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑"}


def _money(sign: str | None, symbol: str, num: str, suffix: str | None) -> str:
    whole, _, frac = num.replace(",", "").partition(".")
    frac = frac.rstrip("0")
    amount = _suffixed(num, suffix) if suffix else _with_unit(whole + (f".{frac}" if frac else ""), "")
    return ("负" if sign else "") + amount + _CURRENCY[symbol]


def _date(m: re.Match[str]) -> str:
    year, month, day = m.group(1), int(m.group(3)), int(m.group(4))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return "".join(_token_zh(g, "", "") for g in (m.group(1), m.group(3), m.group(4)))
    return f"{digits_zh(year)}年{_int_zh(month)}月{_int_zh(day)}日"


def _time(m: re.Match[str]) -> str:
    hour, minute, second = int(m.group(1)), int(m.group(2)), m.group(3)
    words = ("两" if hour == 2 else _int_zh(hour)) + "点"
    if minute:
        words += ("零" if minute < 10 else "") + _int_zh(minute) + "分"
    elif second:
        words += "零分"
    if second:
        sec = int(second)
        words += ("零" if 0 < sec < 10 else "") + _int_zh(sec) + "秒"
    return words


def _around(m: re.Match[str]) -> tuple[str, str]:
    return m.string[max(0, m.start() - 1) : m.start()], m.string[m.end() : m.end() + 4]


def _range_part(num: str, after: str) -> str:
    return _qty_zh(num) if "." in num else _token_zh(num, "", after)


_B = r"(?<![0-9])(?<![0-9][.,])"  # not inside a longer number
_INT = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"
_NUM = rf"(?:{_INT})(?:\.[0-9]+)?"
_SIGN = r"(?:(?<![A-Za-z0-9.])([-−]))?"

_DATE = re.compile(_B + r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})(?![0-9])")
_TIME = re.compile(r"(?<![0-9:])([01]?[0-9]|2[0-3])[:：]([0-5][0-9])(?:[:：]([0-5][0-9]))?(?![0-9]|[:：][0-9])")
_DOTTED = re.compile(_B + r"[0-9]+(?:\.[0-9]+){2,}(?![0-9])")
_HYPHENATED = re.compile(_B + r"[0-9]+(?:-[0-9]+){2,}(?![0-9])")
_PCT_RANGE = re.compile(_B + rf"({_NUM})%?(?:-|\s*[~～]\s*)({_NUM})%")
_RANGE = re.compile(_B + rf"(?<![0-9]-)({_NUM})(?:-|\s*[~～]\s*)({_NUM})(?![0-9])(?![.,][0-9])(?!-[0-9])")
_SCORE = re.compile(_B + r"([0-9]+)[:：]([0-9]+)(?![0-9])(?![:：][0-9])")
_PCT = re.compile(_SIGN + _B + rf"({_NUM})\s?%")
_MONEY = re.compile(_SIGN + rf"([¥$€£])\s?({_NUM})(?:([kKwWmM万千亿])(?![A-Za-z]))?")
_SUFFIX = re.compile(_SIGN + _B + rf"({_NUM})([kKwWmM])(?![A-Za-z])")
_PLAIN = re.compile(_SIGN + _B + rf"({_INT})(?:\.([0-9]+))?")
_ANY_DIGITS = re.compile(r"[0-9]+")


def _plain(m: re.Match[str]) -> str:
    sign, whole, frac = m.group(1), m.group(2), m.group(3)
    before, after = _around(m)
    return ("负" if sign else "") + (_qty_zh(f"{whole}.{frac}") if frac else _token_zh(whole, before, after))


def read_numbers_zh(text: str) -> str:
    """Spell out every ASCII digit in ``text`` in Chinese characters."""
    passes: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
        (_DATE, _date),
        (_TIME, _time),
        (_DOTTED, lambda m: "点".join(_qty_zh(p) for p in m.group(0).split("."))),
        (_HYPHENATED, lambda m: " ".join(digits_zh(p) for p in m.group(0).split("-"))),
        (_PCT_RANGE, lambda m: f"百分之{_qty_zh(m.group(1))}到百分之{_qty_zh(m.group(2))}"),
        (_RANGE, lambda m: f"{_range_part(m.group(1), _around(m)[1])}到{_range_part(m.group(2), _around(m)[1])}"),
        (_SCORE, lambda m: f"{_token_zh(m.group(1), '', '')}比{_token_zh(m.group(2), '', '')}"),
        (_PCT, lambda m: ("负" if m.group(1) else "") + f"百分之{_qty_zh(m.group(2))}"),
        (_MONEY, lambda m: _money(m.group(1), m.group(2), m.group(3), m.group(4))),
        (_SUFFIX, lambda m: ("负" if m.group(1) else "") + _suffixed(m.group(2), m.group(3))),
        (_PLAIN, _plain),
        (_ANY_DIGITS, lambda m: digits_zh(m.group(0))),
    )
    for rx, fn in passes:
        if _ASCII_DIGIT.search(text) is None:
            break
        text = rx.sub(fn, text)
    return text
