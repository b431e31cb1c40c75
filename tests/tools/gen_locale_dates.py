"""Generate parsers/locale_dates.py: the abbreviated month and weekday names of every glibc locale.

`dmesg -T` prints its stamp with strftime("%a %b %e %H:%M:%S %Y") in the reader's LC_TIME locale,
and strftime takes those names from glibc's locale data, so glibc's own locale sources
(/usr/share/i18n/locales, Debian package `locales`) are the authority here, not CLDR: the two
differ (fr: glibc "avril", CLDR "avr."; ru: glibc genitive "мая"). The table is generated once and
committed, so the parser stays pure (no locale files read at run time).

Usage: python tests/tools/gen_locale_dates.py [/usr/share/i18n/locales] > parsers/locale_dates.py
"""

from __future__ import annotations

import os
import re
import sys
from collections import defaultdict

KEYS = {"abmon": "month", "ab_alt_mon": "month", "abday": "weekday"}
# Languages util-linux is translated to (po/LINGUAS) and English: where a stamp reads as a date in
# several languages, these win (a dmesg user is far likelier to run one of them).
PREFERRED = {
    "ca",
    "cs",
    "da",
    "de",
    "es",
    "et",
    "eu",
    "fi",
    "fr",
    "gl",
    "hr",
    "hu",
    "id",
    "it",
    "ja",
    "ko",
    "nl",
    "pl",
    "pt",
    "ru",
    "sk",
    "sl",
    "sr",
    "sv",
    "tr",
    "uk",
    "vi",
    "zh",
    "en",
}
_UCODE = re.compile(r"<U([0-9A-Fa-f]{4,8})>")


def normalize(name: str) -> str:
    """The key a name is looked up by (the parser normalizes tokens the same way)."""
    return name.casefold().strip().rstrip(".").strip()


def _category(path: str) -> tuple[str, str, str]:
    """LC_TIME body of a locale source, its escape and comment chars."""
    escape, comment = "\\", "#"
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    for line in text.splitlines()[:20]:
        if line.startswith("escape_char"):
            escape = line.split()[1]
        elif line.startswith("comment_char"):
            comment = line.split()[1]
    match = re.search(r"^LC_TIME\s*$(.*?)^END LC_TIME", text, re.M | re.S)
    return (match.group(1) if match else ""), escape, comment


def _values(raw: str) -> list[str]:
    strings = re.findall(r'"((?:[^"])*)"', raw)
    return [_UCODE.sub(lambda m: chr(int(m.group(1), 16)), s) for s in strings]


def lc_time(directory: str, locale: str, seen: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    path = os.path.join(directory, locale)
    if not os.path.isfile(path) or locale in seen:
        return {}
    body, escape, comment = _category(path)
    # Join continuation lines (escape char at the end of a line), drop comments.
    lines: list[str] = []
    pending = ""
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith(comment) or not stripped:
            continue
        if stripped.endswith(escape):
            pending += stripped[:-1]
            continue
        lines.append(pending + stripped)
        pending = ""
    out: dict[str, list[str]] = {}
    for line in lines:
        key, _, rest = line.partition(" ") if " " in line else line.partition("\t")
        key = key.strip()
        rest = rest.strip()
        if key == "copy":
            inherited = lc_time(directory, _values(rest)[0], seen | {locale})
            for name, value in inherited.items():
                out.setdefault(name, value)
        elif key in KEYS:
            out[key] = _values(rest)
    return out


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/i18n/locales"
    months: dict[str, set[int]] = defaultdict(set)
    weekdays: dict[str, set[int]] = defaultdict(set)
    locales = sorted(os.listdir(directory))  # files without an LC_TIME section are skipped
    # month name -> {(month, that locale's weekday names Monday first)}: settles shared names.
    calendars: dict[str, set[tuple[int, tuple[str, ...], bool]]] = defaultdict(set)
    used = 0
    for locale in locales:
        names = lc_time(directory, locale)
        if not names:
            continue
        used += 1
        abday = [normalize(name) for name in names.get("abday", [])[:7]]
        # glibc lists Sunday first; Python's date.weekday() counts Monday as 0.
        monday_first = tuple(abday[1:] + abday[:1]) if len(abday) == 7 else ()
        for key in ("abmon", "ab_alt_mon"):
            for index, name in enumerate(names.get(key, [])[:12]):
                if normalize(name):
                    months[normalize(name)].add(index + 1)
                    if monday_first:
                        preferred = locale.split("_")[0] in PREFERRED
                        calendars[normalize(name)].add((index + 1, monday_first, preferred))
        for index, name in enumerate(abday):
            if name:
                weekdays[name].add((index + 6) % 7)
    shared = {name: sorted(entries) for name, entries in calendars.items() if len(months[name]) > 1}

    def table(name: str, data: dict[str, set[int]]) -> str:
        rows = "".join(f"    {key!r}: {tuple(sorted(value))!r},\n" for key, value in sorted(data.items()))
        return f"{name}: dict[str, tuple[int, ...]] = {{\n{rows}}}\n"

    sys.stdout.write(
        '"""Abbreviated month and weekday names of every glibc locale, for `dmesg -T` stamps.\n\n'
        f"Generated by tests/tools/gen_locale_dates.py from glibc's locale sources ({used} locales,\n"
        "/usr/share/i18n/locales of Debian 12's `locales` 2.36): abmon and ab_alt_mon give months\n"
        "(1-12), abday weekdays (0 = Monday, as date.weekday()). Keys are casefolded, without a\n"
        'trailing dot. A name can mean different months in different languages ("lis": October\n'
        "in Croatian, November in Czech and Polish), so values are tuples and SHARED_MONTHS lets the\n"
        "weekday name of the same language settle it.\n"
        'Do not edit by hand: regenerate."""\n\n'
        "# ruff: noqa: E501\n"
        "# fmt: off\n"
        + table("MONTHS", months)
        + "\n"
        + table("WEEKDAYS", weekdays)
        + "\n# A name that is a different month in different languages: (month, weekday names of\n"
        + "# that language Monday first, whether util-linux is translated to it or it is English)\n"
        + "# for each; the stamp's weekday must be the date's.\n"
        + "SHARED_MONTHS: dict[str, tuple[tuple[int, tuple[str, ...], bool], ...]] = {\n"
        + "".join(f"    {key!r}: {tuple(value)!r},\n" for key, value in sorted(shared.items()))
        + "}\n"
        + "# fmt: on\n"
    )


if __name__ == "__main__":
    main()
