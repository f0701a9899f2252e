#!/usr/bin/env python3
"""Input generator for the fuzz suite (test/suites/30_fuzz.sh).

Produces *cases*: short lists of SQL steps thrown at sequin_upsert's SQL interface
(sequin.sequin_upsert, INSERT INTO sequin.mappings / sequin.create_mapping, INSERT INTO
sequin.staging, sequin.explain_mapping, ...). Case N of seed S is generated from its own
random stream random.Random("S/N"), so any case can be printed again on its own.

    gen.py --setup                      SQL: target tables, types, fixed mappings (t:*)
    gen.py --seed S --first N --count M COPY text rows for fuzz.steps (see runner.sql)
    gen.py --seed S --case N            the SQL statements of case N, to reproduce it

Steps of kind "upsert" carry the jsonb argument separately (column arg) so the runner
can check that inserted + updated + deleted + skipped equals the number of records.
Only the standard library is used.
"""
import argparse
import random
import sys

# ---------------------------------------------------------------------------------------
# JSON text with control over what json.dumps cannot do: duplicate keys, number spellings,
# escapes (surrogates, NUL), and very deep nesting (built iteratively).


class Raw:
    """JSON text inserted as is (a number spelling, an escaped string, a deep value)."""
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class Obj:
    """A JSON object as a list of pairs: keys may repeat."""
    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def jstr(s, rng=None):
    out = ['"']
    for ch in s:
        if ch in _ESC:
            out.append(_ESC[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        elif rng is not None and ord(ch) > 0x7F and rng.random() < 0.2:
            cp = ord(ch)
            if cp > 0xFFFF:  # as a surrogate pair escape
                cp -= 0x10000
                out.append("\\u%04x\\u%04x" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)))
            else:
                out.append("\\u%04X" % cp)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class _Tok(str):
    """Punctuation pushed on the serializer's stack (not a JSON string)."""


def dumps(v, rng=None):
    """JSON text of v (dict, Obj, list, str, int, float, bool, None, Raw), built with an
    explicit stack so that nesting depth is not limited by Python's recursion."""
    parts = []
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, _Tok):
            parts.append(str(x))
        elif isinstance(x, Raw):
            parts.append(x.text)
        elif x is None:
            parts.append("null")
        elif x is True:
            parts.append("true")
        elif x is False:
            parts.append("false")
        elif isinstance(x, int):
            parts.append(str(x))
        elif isinstance(x, float):
            parts.append(repr(x))
        elif isinstance(x, str):
            parts.append(jstr(x, rng))
        elif isinstance(x, (list, tuple)):
            items = [_Tok("[")]
            for i, e in enumerate(x):
                if i:
                    items.append(_Tok(","))
                items.append(e)
            items.append(_Tok("]"))
            stack.extend(reversed(items))
        elif isinstance(x, (dict, Obj)):
            pairs = x.pairs if isinstance(x, Obj) else list(x.items())
            items = [_Tok("{")]
            for i, (k, e) in enumerate(pairs):
                items.append(_Tok(("," if i else "") + jstr(k, rng) + ":"))
                items.append(e)
            items.append(_Tok("}"))
            stack.extend(reversed(items))
        else:
            raise TypeError(type(x))
    return "".join(parts)


def deep(depth, kind="array", leaf="1"):
    """A value nested depth levels deep, as JSON text."""
    if kind == "array":
        return Raw("[" * depth + leaf + "]" * depth)
    return Raw('{"a":' * depth + leaf + "}" * depth)


def lit(s):
    """SQL string literal (standard_conforming_strings), or NULL."""
    if s is None:
        return "NULL"
    return "'" + s.replace("'", "''") + "'"


def text_array(items):
    if items is None:
        return "NULL"
    if isinstance(items, Raw):  # a hand-written array literal
        return items.text
    return "ARRAY[" + ", ".join(lit(i) for i in items) + "]::text[]"


# ---------------------------------------------------------------------------------------
# Values

INT_EDGES = [0, 1, -1, 7, 13, 42, 127, 32767, 32768, -32768, -32769, 2147483647, 2147483648,
             -2147483648, -2147483649, 9223372036854775807, 9223372036854775808,
             -9223372036854775808, -9223372036854775809, Raw("1.0"), Raw("1.5"), Raw("-0"),
             Raw("0.0"), Raw("-0.0"), Raw("1e2"), Raw("1E+2"), Raw("1e-2"), Raw("1e308"),
             Raw("-1e308"), Raw("1e-400"), Raw("1e400"), Raw("9" * 40), Raw("-" + "9" * 40),
             Raw("0." + "0" * 300 + "1"), Raw("123456789012345678901234567890.5"),
             Raw("2.0000000000000000000001"), Raw("1" + "0" * 1000)]
INT_STRINGS = ["12", " 12", "12 ", "-0", "+5", "0x1F", "1e2", "", "abc", "\u0661\u0662",
               "9223372036854775808", "1_000", "  ", "NaN", "1.0", "0012", "-", "2147483648"]
NUM_EXTRA = [Raw("123.456"), Raw("999.995"), Raw("-999.99"), Raw("999.994"), Raw("0.005"),
             Raw("0.0049"), Raw("-0.005"), Raw("1e-130"), Raw("5e-324"),
             "NaN", "Infinity", "-Infinity", "inf", "1e5", "  3.14  ", "3,14", "1e131072"]
FLOAT_EXTRA = [Raw("1.7976931348623157e308"), Raw("1.8e308"), Raw("4.9e-324"), Raw("1e-320"),
               Raw("3.4028235e38"), Raw("3.5e38"), Raw("1e-46"), Raw("1e-50"), "NaN", "inf",
               "-Infinity", "1e400", "1e-400", "0x10"]
TIME_STRINGS = ["2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00", "2024-05-01 12:00:00",
                "2024-05-01", "2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00.5555555",
                "2024-05-01 12:00 Europe/Berlin", "2024-05-01 12:00 UTC", "2024-05-01 12:00:00 BC",
                "2024-05-01 12:00:00 AD", "infinity", "-infinity", "epoch", "now", "today",
                "allballs", "294277-01-01", "294276-12-31 23:59:59.999999+00",
                "4714-11-24 00:00:00 BC", "4714-11-23 BC", "12:00", "2024-13-01", "2024-02-30",
                "", "Z", "::::+", "T:", "2024-05-01T25:00:00Z", "1999-01-08 04:05:06 -8:00",
                "J2451187", "1:2:3.4.5+", "2024-05-01T12:00:00+99:99", "2024-05-01 12:00:00 Mars/Base",
                "2024-05-01T12:00:00-00:00", "5874897-12-31", "5874898-01-01", "0000-01-01",
                "2024-05-01 12:00:00.999999999999", "12:00:00 a", "10:00 pm", "2024-05-01 12:00 bc"]
TIME_NUMBERS = [0, -1, 1680000000, Raw("1680000000.123456"), Raw("1680000000.1234567"),
                10000000000, 253402300800, 9224318016000, 9224318016001, -210866803200,
                -210866803201, Raw("1e308"), Raw("-1e308"), Raw("1e-400"), Raw("-0"),
                Raw("1e20"), Raw("0.5"), 185330000000]
TOD = ["12:00", "24:00:00", "24:00:01", "allballs", "12:00:00+02", "noon", "25:00", "-1:00",
       "12:00:00.9999995", 3600]
INTERVALS = ["1 day", "P1D", "PT1H", "1 year 2 months", "-1 century", "178956970 years",
             "178956971 years", "@ 1 minute ago", "", "1e10 days", "P1Y2M3DT4H5M6.7S",
             "2147483647 days 2147483647 hours", 60]
UUIDS = ["9f1c0000-0000-4000-8000-000000000000", "{9f1c0000-0000-4000-8000-000000000001}",
         "9F1C00000000400080000000000000002", "9f1c", "", "00000000-0000-0000-0000-000000000000",
         "9f1c0000-0000-4000-8000-00000000000g", "9f1c0000-0000-4000-8000-0000000000001",
         "9f1c00000000-4000-8000-000000000003"]
ENUMS = ["sad", "ok", "happy", "SAD", "", " ok", "mad", "ok "]
BOOLS = [True, False, "t", "f", "yes", "no", "on", "off", "1", "0", "maybe", "", 1, 0, "TRUE ",
         "tr"]
BYTEA = ["\\x00ff", "\\xZZ", "\\x0", "abc", "\\\\", "\\000", "\\", "\\x", "\\xDEADBEEF", "\\777"]
INETS = ["::1", "127.0.0.1", "192.168.0.1/33", "10.0.0.1/8", "10.0.0.0/8", "fe80::1%eth0",
         "::ffff:1.2.3.4/128", "1.2.3", "", "0.0.0.0/0", "256.1.1.1", "::/129"]
MACS = ["08:00:2b:01:02:03", "08-00-2b-01-02-03", "0800.2b01.0203", "08:00:2b:01:02",
        "zz:zz:zz:zz:zz:zz", "08002b010203"]
POINTS = ["(1,2)", "1,2", "(1e308,1e309)", "(NaN,inf)", "(,)", [1, 2], "(1,2", "((1,2))"]
RANGES = ["[1,5)", "empty", "(5,1)", "[,]", "[1,2147483648)", "(1,1)", "[1,1]", "[a,b]", "(,)"]
BITS = ["101", "1011", "10", "1x1", "", "x1F", "X5", "111111"]
MONEY = ["$1.00", "12.345", "-92233720368547758.08", "92233720368547758.08", "1e20", 12, "$-0"]
OIDS = ["0", "4294967295", "4294967296", "-1", "-2147483649", 5, "12abc"]
TSV = ["a:1 b:2", "a:1A", "'a b'", "a:99999", "a:0", " ", "\\", "a:1,2,3", "'unterminated"]
PAIRS = ["(1,x)", "(1,)", "(,)", "(x,1)", "()", "(1,x,3)", Obj([("a", 1), ("b", "x")]), '(1,"a""b")']
XMLS = ["<a/>", "<a>", "", '<?xml version="1.0"?><a/>', "text", "<a>&bogus;</a>", "<!DOCTYPE a>"]
EVIL = ["ok", "ok", "ok", "reenter", "recurse", "remap", "remap2", "delmap", "alter", "dropadd",
        "explain", "stage", "apply", "fail", "false", "tomb", "truncate", "mapself"]

STRINGS = ["", "x", "hello", "k1", "\u00fcn\u00efc\u00f6d\u00e9", "\u65e5\u672c\u8a9e",
           "\U0001D11E", "\u200f\u202e rtl \u202c", "e\u0301", "\ufeff", "\uffff", "\U0010ffff",
           "'; DROP TABLE fz_all; --", "%s%s%n%x%d", "\\", '"', "a.b", "$now", "null", "true",
           "NaN", " ", "\t\n\r", "x" * 63, "x" * 64, "\u00e9" * 40, "\x7f", "\u0085",
           "\ud7ff", "\ue000", "Robert'); DROP TABLE sequin.mappings;--", "\u0130", "\u00df",
           "ab\u2400cd", "{1,2}", "(1,2)", "1e400", "<a/>"]
# Strings that the jsonb input refuses or treats specially (a clean error at the cast).
POISON = [Raw('"\\u0000"'), Raw('"a\\u0000b"'), Raw('"\\ud800"'), Raw('"\\udc00"'),
          Raw('"\\ud800x"'), Raw('"\\x41"'), Raw('"\\u12"'), Raw('"\\u00"'), Raw('"\\'),
          Raw('"\\uD83D\\uDE00"'), Raw('"\\ud834\\udd1e"'), Raw('"\\u00e9\\/\\b\\f\\n\\r\\t"'),
          Raw('"\\uDBFF\\uDFFF"'), Raw('"\\uFFFE"')]


# Characters for random strings: printable ASCII, controls, BMP letters and symbols (no
# surrogates), private use, and astral characters.
_AR = random.Random(12345)
ALPHABET = ([chr(c) for c in range(0x20, 0x7f)] * 4 + [chr(c) for c in range(1, 0x20)] +
            [chr(_AR.randint(0xa0, 0xd7ff)) for _ in range(300)] +
            [chr(_AR.randint(0xe000, 0xfffd)) for _ in range(60)] +
            [chr(_AR.randint(0x10000, 0x10ffff)) for _ in range(60)] +
            ["\u0301", "\u200b", "\u200f", "\u202e", "\ufeff", "\uffff", "\u0085", "\u2028"])


def rand_string(rng, poison=True):
    r = rng.random()
    if r < 0.03 and poison:
        return rng.choice(POISON)
    if r < 0.6:
        return rng.choice(STRINGS)
    if r < 0.8:
        n = rng.choice([1, 2, 5, 10, 30, 100, 1000])
        return "".join(rng.choices(ALPHABET, k=n))
    return "s%d" % rng.randint(0, 1000)


def rand_number(rng):
    r = rng.random()
    if r < 0.5:
        return rng.choice(INT_EDGES + NUM_EXTRA[:10] + FLOAT_EXTRA[:8])
    if r < 0.8:
        return rng.randint(-1000, 1000)
    return Raw(repr(rng.uniform(-1e6, 1e6)))


def rand_json(rng, depth=0, poison=True):
    r = rng.random()
    if depth > 3:
        r = r * 0.6
    if r < 0.1:
        return None
    if r < 0.2:
        return rng.choice([True, False])
    if r < 0.4:
        return rand_number(rng)
    if r < 0.6:
        return rand_string(rng, poison)
    if r < 0.8:
        return [rand_json(rng, depth + 1, poison) for _ in range(rng.randint(0, 4))]
    pairs = [(rand_key(rng), rand_json(rng, depth + 1, poison)) for _ in range(rng.randint(0, 4))]
    if pairs and rng.random() < 0.2:
        pairs.append((pairs[0][0], rand_json(rng, depth + 1, poison)))  # duplicate key
    return Obj(pairs)


def rand_key(rng):
    r = rng.random()
    if r < 0.7:
        return rng.choice(["a", "b", "id", "data", "x", "deleted", "updated_idx", "collection_id",
                           "0", "1", "a.b", "", " ", "\u00fc", "\U0001D11E", "$now", "k"])
    s = rand_string(rng)
    return s if isinstance(s, str) else "p"


def array_of(rng, cat):
    r = rng.random()
    if r < 0.1:
        return rng.choice(["{1,2}", "{{1,2},{3,4}}", "[0:1]={1,2}", "{", "{}", "{NULL}",
                           '{"a","b"}', "{{1},{2,3}}", "{" + ",".join(["1"] * 200) + "}"])
    if r < 0.2:
        return [[value_for(rng, cat), value_for(rng, cat)], [value_for(rng, cat)]]
    n = rng.choice([0, 1, 2, 3, 4, 10])
    return [None if rng.random() < 0.15 else value_for(rng, cat) for _ in range(n)]


def value_for(rng, cat):
    """A value for a column of category cat: mostly plausible, sometimes anything."""
    if rng.random() < 0.15:
        return rand_json(rng)
    if cat.startswith("array:"):
        return array_of(rng, cat[6:])
    pools = {
        "int": lambda: rng.choice(INT_EDGES + INT_STRINGS) if rng.random() < 0.5 else rng.randint(-100, 100),
        "numeric": lambda: rng.choice(INT_EDGES + NUM_EXTRA) if rng.random() < 0.6 else Raw("%d.%02d" % (rng.randint(-999, 999), rng.randint(0, 99))),
        "float": lambda: rng.choice(INT_EDGES + FLOAT_EXTRA) if rng.random() < 0.6 else Raw(repr(rng.uniform(-1e9, 1e9))),
        "text": lambda: rand_string(rng) if rng.random() < 0.8 else rand_number(rng),
        "time": lambda: rng.choice(TIME_STRINGS) if rng.random() < 0.6 else rng.choice(TIME_NUMBERS),
        "tod": lambda: rng.choice(TOD),
        "interval": lambda: rng.choice(INTERVALS),
        "uuid": lambda: rng.choice(UUIDS),
        "enum": lambda: rng.choice(ENUMS),
        "pos": lambda: rng.choice([1, 0, -1, 2147483647, "5", Raw("1.5"), 2, 3]),
        "bool": lambda: rng.choice(BOOLS),
        "bytea": lambda: rng.choice(BYTEA),
        "inet": lambda: rng.choice(INETS),
        "mac": lambda: rng.choice(MACS),
        "point": lambda: rng.choice(POINTS),
        "range": lambda: rng.choice(RANGES),
        "bits": lambda: rng.choice(BITS),
        "money": lambda: rng.choice(MONEY),
        "oid": lambda: rng.choice(OIDS),
        "tsv": lambda: rng.choice(TSV),
        "pair": lambda: rng.choice(PAIRS),
        "xml": lambda: rng.choice(XMLS),
        "evil": lambda: rng.choice(EVIL),
        "any": lambda: rand_json(rng),
    }
    return pools.get(cat, pools["any"])()


GOOD = {
    "int": lambda rng: rng.randint(-100, 100) if rng.random() < 0.9 else str(rng.randint(0, 99)),
    "numeric": lambda rng: Raw("%d.%02d" % (rng.randint(-999, 999), rng.randint(0, 99))),
    "float": lambda rng: Raw(repr(round(rng.uniform(-1e6, 1e6), 3))),
    "text": lambda rng: rng.choice(["ab", "x", "\u00fc\u00e9", "\U0001D11E", "o'k", "a\"b", "\\", "k1", ""]),
    "time": lambda rng: rng.choice(["2024-05-%02dT12:%02d:00Z" % (rng.randint(1, 28), rng.randint(0, 59)),
                                    "2024-05-01T14:00:00+02:00", "2024-05-01 12:00:00", "2024-05-01",
                                    1680000000 + rng.randint(0, 10 ** 6), "2024-05-01 12:00:00.123456"]),
    "tod": lambda rng: "%02d:%02d" % (rng.randint(0, 23), rng.randint(0, 59)),
    "interval": lambda rng: "%d days" % rng.randint(-10, 10),
    "uuid": lambda rng: rng.choice(UUID_KEYS),
    "enum": lambda rng: rng.choice(["sad", "ok", "happy"]),
    "pos": lambda rng: rng.randint(1, 100),
    "bool": lambda rng: rng.choice([True, False]),
    "bytea": lambda rng: rng.choice(["\\x00ff", "\\x", "abc"]),
    "inet": lambda rng: rng.choice(["127.0.0.1", "10.0.0.0/8", "::1"]),
    "mac": lambda rng: "08:00:2b:01:02:03",
    "point": lambda rng: "(%d,%d)" % (rng.randint(-9, 9), rng.randint(-9, 9)),
    "range": lambda rng: "[1,%d)" % rng.randint(2, 9),
    "bits": lambda rng: rng.choice(["101", "000", "111"]),
    "money": lambda rng: "$%d.%02d" % (rng.randint(0, 999), rng.randint(0, 99)),
    "oid": lambda rng: str(rng.randint(0, 99999)),
    "tsv": lambda rng: "a:1 b:2",
    "pair": lambda rng: "(1,x)",
    "xml": lambda rng: "<a>%d</a>" % rng.randint(0, 9),
    "evil": lambda rng: "ok",
    "any": lambda rng: rand_json(rng, 2, poison=False),
}
SHORT_COLUMNS = {"vc3", "ch2", "short"}


def good_value(rng, col, cat):
    """A value that converts into the column (most of the time)."""
    if cat.startswith("array:"):
        n = rng.randint(0, 2 if col in ("arrdom",) else 4)
        if col == "i2v":
            return [rng.randint(0, 99) for _ in range(n)]
        return [good_value(rng, "", cat[6:]) for _ in range(n)]
    if col in SHORT_COLUMNS:
        return rng.choice(["ab", "x", "\u00fc", ""])
    if col == "chk":
        return rng.randint(14, 99)
    return GOOD.get(cat, GOOD["any"])(rng)


# ---------------------------------------------------------------------------------------
# Targets and the fixed mappings (gen.py --setup creates them)

# sql type -> value category
TYPES = [
    ("i2", "int2", "int"), ("i4", "int4", "int"), ("i8", "int8", "int"),
    ("num", "numeric", "numeric"), ("n52", "numeric(5,2)", "numeric"), ("f4", "real", "float"),
    ("f8", "double precision", "float"), ("vc3", "varchar(3)", "text"), ("ch2", "char(2)", "text"),
    ("txt", "text", "text"), ("nm", "name", "text"), ("ts", "timestamp", "time"),
    ("ts0", "timestamp(0)", "time"), ("ts3", "timestamp(3)", "time"), ("tstz", "timestamptz", "time"),
    ("d", "date", "time"), ("tm", "time", "tod"), ("iv", "interval", "interval"), ("u", "uuid", "uuid"),
    ("mood", "fz_mood", "enum"), ("pos", "fz_pos", "pos"), ("short", "fz_short", "text"),
    ("nnd", "fz_nn DEFAULT 0", "int"), ("ia", "int[]", "array:int"), ("ta", "text[]", "array:text"),
    ("tsa", "timestamp[]", "array:time"), ("posa", "fz_pos[]", "array:pos"),
    ("n41a", "numeric(4,1)[]", "array:numeric"), ("ja", "jsonb[]", "array:any"),
    ("iaa", "int[][]", "array:int"), ("moods", "fz_mood[]", "array:enum"),
    ("arrdom", "fz_small_arr", "array:int"), ("jb", "jsonb", "any"), ("js", "json", "any"),
    ("b", "bool", "bool"), ("by", "bytea", "bytea"), ("ip", "inet", "inet"), ("cid", "cidr", "inet"),
    ("mac", "macaddr", "mac"), ("pt", "point", "point"), ("rng", "int4range", "range"),
    ("bits", "bit(3)", "bits"), ("vb", "varbit(5)", "bits"), ("mny", "money", "money"),
    ("o", "oid", "oid"), ("tsv", "tsvector", "tsv"), ("i2v", "int2vector", "array:int"),
    ("pair", "fz_pair", "pair"), ("x", "xml", "xml"), ("del", "bool", "bool"),
    ("nncol", "int NOT NULL DEFAULT 0", "int"), ("chk", "int CHECK (chk <> 13)", "int"),
]
CAT = {name: cat for name, _, cat in TYPES}

WEIRD_COLUMNS = [('a.b', 'text', 'text'), ('with space', 'int', 'int'),
                 ('\u00dcn\u00ef\u00a9\u00f8d\u00e9', 'text', 'text'), ('x"y', 'text', 'text'),
                 ('select', 'text', 'text'), ('$now', 'timestamptz', 'time'),
                 ('L' * 63, 'text', 'text'), ('UPPER', 'int', 'int'), ('1', 'text', 'text'),
                 ("it's", 'jsonb', 'any'), ('%s%n', 'text', 'text'), ('\U0001D11E', 'int', 'int')]

WIDE_COLUMNS = 130  # more than FUNC_MAX_ARGS (100) parameters for the upsert statement


def qi(name):
    return '"' + name.replace('"', '""') + '"'


# table -> list of (column, category); keys / mappable info for the mapping fuzzer
TABLES = {
    "fz_all": [("id", "text"), ("v", "int")] + [(n, c) for n, _, c in TYPES] +
              [("gen", "int"), ("ident", "int"), ("byd", "int"), ("dflt", "int")],
    "fz_int": [("k", "int"), ("v", "numeric"), ("note", "text")],
    "fz_uuid": [("k", "uuid"), ("v", "time"), ("payload", "any")],
    "fz_comp": [("a", "text"), ("b", "int"), ("v", "int"), ("payload", "any")],
    "fz_numkey": [("k", "numeric"), ("v", "text")],
    "fz_enumkey": [("k", "enum"), ("v", "time"), ("n", "int")],
    "fz_weird": [(n, c) for n, _, c in WEIRD_COLUMNS],
    "fz_part": [("k", "int"), ("v", "int"), ("txt", "text")],
    "fz_evil": [("id", "text"), ("v", "int"), ("e", "evil"), ("extra", "int")],
    "fz_jorder": [("id", "int"), ("v", "any"), ("t", "text")],
    "fz_byteakey": [("k", "bytea"), ("v", "int")],
    "fz_domkey": [("k", "pos"), ("v", "int")],
    "fz_nopk": [("a", "int"), ("b", "int"), ("c", "text"), ("d", "int")],
    "fz_wide": [("id", "text")] + [("c%d" % i, "int") for i in range(WIDE_COLUMNS)],
    "fz_defer": [("k", "int"), ("v", "int")],
}
OTHER_TARGETS = ["fz_view", "fz_seq", "fz_mview", "sequin.mappings", "sequin.staging",
                 "sequin.tombstones", "pg_catalog.pg_class", "nope", "", '"FZ_ALL"', "public.fz_all",
                 "1259", "0", "-1", "fz_all.id", "fz_all; DROP TABLE fz_int", "fz_comp_parent",
                 "fz_inbox", "fz_all*"]


class Mapping:
    def __init__(self, coll, table, cols, conflict=None, keep=None, order=None, on_delete=None,
                 required=None, keys=None):
        self.coll = coll
        self.table = table
        self.cols = cols  # list of (column, source, category)
        self.conflict = conflict
        self.keep = keep
        self.order = order
        self.on_delete = on_delete
        self.required = required
        self.keys = keys or conflict or []  # key columns for generating records

    def sql(self):
        args = ["%s" % lit(self.coll), lit(self.table), lit(dumps(Obj([(c, s) for c, s, _ in self.cols]))) + "::jsonb"]
        if self.conflict is not None:
            args.append("conflict_columns => " + text_array(self.conflict))
        if self.keep is not None:
            args.append("keep_on_conflict => " + text_array(self.keep))
        if self.order is not None:
            args.append("order_column => " + lit(self.order))
        if self.on_delete is not None:
            args.append("on_delete => " + lit(self.on_delete))
        if self.required is not None:
            args.append("required => " + text_array(self.required))
        return "SELECT sequin.create_mapping(" + ", ".join(args) + ")"


# Left out of the fixed mappings: a composite column makes create_mapping fail (42804
# "column ... is of type fz_pair but expression is of type ...": ROWS FROM (unnest($n))
# expands an array of composites into its fields). Fuzzed mappings still use it.
FIXED_EXCLUDE = {"pair", "nnd"}


def all_cols(paths=None):
    cols = [("id", "id", "text"), ("v", "updated_idx", "int")]
    for name, _, cat in TYPES:
        if name in FIXED_EXCLUDE:
            continue
        src = "data." + name
        if paths == "keys":
            src = ["data", name]
        cols.append((name, src, cat))
    return cols


def fixed_mappings():
    allc = all_cols()
    allc_del = [c if c[0] != "del" else ("del", "deleted", "bool") for c in allc]
    deep = [("id", "id", "text"), ("v", "updated_idx", "int"), ("i4", "data.items.0.q", "int"),
            ("txt", "data.items.1.name", "text"), ("jb", "data.items", "any"),
            ("ts", "data.a.b.c.d.e.f.ts", "time"), ("ia", "data.items.2", "array:int"),
            ("nm", ["data", "a.b", "0"], "text"), ("b", "data.0.1.2", "bool")]
    return [
        Mapping("t:all", "fz_all", allc, order="v", keys=["id"]),
        Mapping("t:all_noorder", "fz_all", allc_del, on_delete="upsert", keys=["id"]),
        Mapping("t:all_ignore", "fz_all", allc[:20], order="v", on_delete="ignore", keys=["id"]),
        Mapping("t:all_keep", "fz_all", all_cols("keys"), order="v", keep=["i4", "txt", "tstz"],
                required=["id", "v", "txt"], keys=["id"]),
        Mapping("t:all_deep", "fz_all", deep, order="v", keys=["id"]),
        Mapping("t:all_now", "fz_all", [("id", "id", "text"), ("v", "updated_idx", "int"),
                                        ("ts", "$now", "time"), ("tstz", "$now", "time"),
                                        ("d", "$now", "time"), ("txt", "data.txt", "text")],
                order="v", keep=["ts"], keys=["id"]),
        Mapping("t:int", "fz_int", [("k", "id", "int"), ("v", "updated_idx", "numeric"),
                                    ("note", "data.note", "text")], order="v", keys=["k"]),
        Mapping("t:uuid", "fz_uuid", [("k", "id", "uuid"), ("v", "upstream_updated_at", "time"),
                                      ("payload", "data", "any")], order="v", keys=["k"]),
        Mapping("t:comp", "fz_comp", [("a", "data.a", "text"), ("b", "data.b", "int"),
                                      ("v", "updated_idx", "int"), ("payload", "data", "any")],
                conflict=["a", "b"], order="v"),
        Mapping("t:numkey", "fz_numkey", [("k", "id", "numeric"), ("v", "data.ver", "text")],
                order="v", keys=["k"]),
        Mapping("t:enum", "fz_enumkey", [("k", "data.mood", "enum"), ("v", "data.day", "time"),
                                         ("n", "data.n", "int")], order="v", keys=["k"]),
        Mapping("t:weird", "fz_weird", [
            ("a.b", ["id"], "text"), ("with space", ["data", "with space"], "int"),
            ("\u00dcn\u00ef\u00a9\u00f8d\u00e9", "data.\u00dcn\u00ef\u00a9\u00f8d\u00e9", "text"),
            ('x"y', ["data", 'x"y'], "text"), ("select", "data.select", "text"),
            ("$now", "$now", "time"), ("L" * 63, ["data", "a.b.c"], "text"),
            ("UPPER", "data.UPPER", "int"), ("1", "data.1", "text"), ("it's", ["data", "it's"], "any"),
            ("%s%n", "data.%s%n", "text"), ("\U0001D11E", "data.\U0001D11E", "int")],
            order="with space", keys=["a.b"]),
        Mapping("t:part", "fz_part", [("k", "id", "int"), ("v", "updated_idx", "int"),
                                      ("txt", "data.txt", "text")], order="v", keys=["k"]),
        Mapping("t:evil", "fz_evil", [("id", "id", "text"), ("v", "updated_idx", "int"),
                                      ("e", "data.e", "evil"), ("extra", "data.extra", "int")],
                order="v", keys=["id"]),
        Mapping("t:jorder", "fz_jorder", [("id", "id", "int"), ("v", "updated_idx", "any"),
                                          ("t", "data.t", "text")], order="v", keys=["id"]),
        Mapping("t:byteakey", "fz_byteakey", [("k", "id", "bytea"), ("v", "updated_idx", "int")],
                order="v", keys=["k"]),
        Mapping("t:domkey", "fz_domkey", [("k", "id", "pos"), ("v", "updated_idx", "int")],
                order="v", keys=["k"]),
    ]


SETUP_TYPES = r"""
SET client_min_messages = warning;
CREATE TYPE fz_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN fz_pos AS int CHECK (VALUE > 0);
CREATE DOMAIN fz_short AS text CHECK (length(VALUE) < 10);
CREATE DOMAIN fz_nn AS int NOT NULL;
CREATE DOMAIN fz_small_arr AS int[] CHECK (cardinality(VALUE) < 3);
CREATE TYPE fz_pair AS (a int, b text);

-- The hostile domain: its CHECK re-enters the extension or changes what it works on.
CREATE FUNCTION fz_evil_check(t text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  CASE t
  WHEN 'reenter' THEN
    PERFORM * FROM sequin.sequin_upsert(jsonb_build_object('collection_id', 't:evil', 'id', 'inner', 'updated_idx', 1, 'data', jsonb_build_object('e', 'ok')));
  WHEN 'recurse' THEN
    PERFORM * FROM sequin.sequin_upsert(jsonb_build_object('collection_id', 't:evil', 'id', 'r', 'updated_idx', 1, 'data', jsonb_build_object('e', 'recurse')));
  WHEN 'remap' THEN
    UPDATE sequin.mappings SET columns = columns WHERE collection_id = 't:evil';
  WHEN 'remap2' THEN
    UPDATE sequin.mappings SET required = CASE WHEN required IS NULL THEN '{id}'::text[] END WHERE collection_id = 't:evil';
  WHEN 'delmap' THEN
    DELETE FROM sequin.mappings WHERE collection_id = 't:evil';
    PERFORM sequin.create_mapping('t:evil', 'fz_evil', '{"id": "id", "v": "updated_idx", "e": "data.e", "extra": "data.extra"}', order_column => 'v');
  WHEN 'mapself' THEN
    PERFORM sequin.create_mapping('t:evil2', 'fz_evil', '{"id": "id", "v": "updated_idx", "e": "data.e"}', order_column => 'v');
    PERFORM * FROM sequin.sequin_upsert('{"collection_id": "t:evil2", "id": "self", "updated_idx": 1, "data": {"e": "ok"}}');
  WHEN 'alter' THEN
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'fz_evil'::regclass AND attname = 'extra') = 'int4'::regtype THEN
      ALTER TABLE fz_evil ALTER COLUMN extra TYPE bigint;
    ELSE
      ALTER TABLE fz_evil ALTER COLUMN extra TYPE int;
    END IF;
  WHEN 'dropadd' THEN
    ALTER TABLE fz_evil DROP COLUMN extra;
    ALTER TABLE fz_evil ADD COLUMN extra int;
  WHEN 'explain' THEN
    PERFORM * FROM sequin.explain_mapping('t:evil');
  WHEN 'stage' THEN
    INSERT INTO sequin.staging(record) VALUES (jsonb_build_object('collection_id', 't:evil', 'id', 'staged', 'updated_idx', 2, 'data', jsonb_build_object('e', 'ok')));
  WHEN 'apply' THEN
    PERFORM * FROM sequin.apply_staging(max_rows => 5, retry_failed => true);
  WHEN 'fail' THEN
    RAISE EXCEPTION 'evil check says no' USING ERRCODE = 'P0001';
  WHEN 'tomb' THEN
    DELETE FROM sequin.tombstones;
  WHEN 'truncate' THEN
    TRUNCATE fz_evil;
  ELSE
    NULL;
  END CASE;
  RETURN t IS DISTINCT FROM 'false';
END $$;
CREATE DOMAIN fz_evil_dom AS text CHECK (fz_evil_check(VALUE));
"""

SETUP_TABLES_TAIL = r"""
CREATE TABLE fz_int (k int8 PRIMARY KEY, v numeric, note text);
CREATE TABLE fz_uuid (k uuid PRIMARY KEY, v timestamptz, payload jsonb);
CREATE TABLE fz_comp (a text, b int, v int, payload jsonb, UNIQUE (a, b));
CREATE TABLE fz_numkey (k numeric PRIMARY KEY, v text);
CREATE TABLE fz_enumkey (k fz_mood PRIMARY KEY, v date, n int2);
CREATE TABLE fz_part (k int PRIMARY KEY, v int, txt text) PARTITION BY RANGE (k);
CREATE TABLE fz_part_a PARTITION OF fz_part FOR VALUES FROM (0) TO (1000);
CREATE TABLE fz_part_b PARTITION OF fz_part FOR VALUES FROM (1000) TO (2000);
CREATE TABLE fz_evil (id text PRIMARY KEY, v int, e fz_evil_dom, extra int);
CREATE TABLE fz_jorder (id int PRIMARY KEY, v jsonb, t text);
CREATE TABLE fz_byteakey (k bytea PRIMARY KEY, v int);
CREATE TABLE fz_domkey (k fz_pos PRIMARY KEY, v int);
CREATE TABLE fz_nopk (a int, b int, c text, d int);
CREATE UNIQUE INDEX ON fz_nopk (a);
CREATE UNIQUE INDEX ON fz_nopk ((b + 1));
CREATE UNIQUE INDEX ON fz_nopk (c) WHERE d > 0;
CREATE TABLE fz_defer (k int, v int, CONSTRAINT fz_defer_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED);
ALTER TABLE fz_defer ADD PRIMARY KEY (k);
CREATE VIEW fz_view AS SELECT * FROM fz_int;
CREATE SEQUENCE fz_seq;
CREATE MATERIALIZED VIEW fz_mview AS SELECT 1 AS k;
CREATE TABLE fz_comp_parent (a text PRIMARY KEY);
CREATE TABLE fz_inbox (received serial, record jsonb);
CREATE TRIGGER apply AFTER INSERT ON fz_inbox REFERENCING NEW TABLE AS new_records
    FOR EACH STATEMENT EXECUTE FUNCTION sequin.staging_trigger();
"""


def setup_sql():
    out = [SETUP_TYPES]
    cols = ["id text PRIMARY KEY", "v bigint"] + ["%s %s" % (n, t) for n, t, _ in TYPES]
    cols += ["gen int GENERATED ALWAYS AS (i4 * 2) STORED", "ident int GENERATED ALWAYS AS IDENTITY",
             "byd int GENERATED BY DEFAULT AS IDENTITY", "dflt int DEFAULT 7"]
    out.append("CREATE TABLE fz_all (%s);" % ", ".join(cols))
    out.append("CREATE TABLE fz_weird (%s, PRIMARY KEY (%s));" % (
        ", ".join("%s %s" % (qi(n), t) for n, t, _ in WEIRD_COLUMNS), qi("a.b")))
    out.append("CREATE TABLE fz_wide (id text PRIMARY KEY, %s);" % ", ".join(
        "c%d int" % i for i in range(WIDE_COLUMNS)))
    out.append(SETUP_TABLES_TAIL)
    for m in fixed_mappings():
        out.append(m.sql() + ";")
    out.append("RESET client_min_messages;")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------
# Records

TEXT_KEYS = ["k%d" % i for i in range(12)]
UUID_KEYS = ["9f1c0000-0000-4000-8000-%012d" % i for i in range(8)]


def key_value(rng, cat, noisy=True):
    r = rng.random() if noisy else 0.5
    if r < 0.05:
        return rand_json(rng)
    if cat == "text":
        return rng.choice(TEXT_KEYS) if r < 0.9 else rand_string(rng)
    if cat == "int":
        return rng.randint(0, 15) if r < 0.85 else rng.choice(INT_EDGES + ["5", "x", 1500, 2500, -1])
    if cat == "uuid":
        return rng.choice(UUID_KEYS) if r < 0.9 else rng.choice(UUIDS)
    if cat == "numeric":
        return rng.choice([1, 2, 3, Raw("1.0"), Raw("1.00"), Raw("2.5"), Raw("-0"), "NaN", "Infinity"])
    if cat == "bytea":
        return rng.choice(["\\x01", "\\x02", "\\x0102", "k1", "\\xZZ", ""])
    if cat == "pos":
        return rng.choice([1, 2, 3, 0, -5, "4"])
    if cat == "enum":
        return rng.choice(["sad", "ok", "happy", "meh"])
    return value_for(rng, cat)


def version_value(rng, cat="int", noisy=True):
    r = rng.random() if noisy else 0.0
    if r < 0.85:
        v = rng.randint(1, 30)
        if cat == "text":
            return "v%02d" % v
        if cat == "time":
            return "2024-05-%02dT12:00:00Z" % v if rng.random() < 0.7 else 1680000000 + v
        return v
    if r < 0.93:
        return value_for(rng, cat)
    return rng.choice([None, 0, -1, Raw("1.5"), "7", 9223372036854775807, 9223372036854775808,
                       True, Obj([]), [], Raw("1e400"), "", Raw("-0")])


def path_keys(source):
    if isinstance(source, str):
        if source == "$now":
            return None
        return source.split(".")
    if isinstance(source, list) and source and all(isinstance(k, str) for k in source):
        return source
    return None


def set_path(rng, root, keys, value):
    """root[k1][k2]... = value, creating objects (or arrays for small digit keys)."""
    if not keys or any(k == "" for k in keys):
        return
    if len(keys) > 100:  # a very long path: the nested value as text
        inner = dumps(value, rng)
        prefix, suffix = [], []
        for k in keys[1:]:
            if k.isdigit() and k == "0":
                prefix.append("[")
                suffix.append("]")
            else:
                prefix.append("{" + jstr(k) + ":")
                suffix.append("}")
        root[keys[0]] = Raw("".join(prefix) + inner + "".join(reversed(suffix)))
        return
    node = root
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            idx = int(k) if k.isdigit() and len(k) < 3 else None
            if idx is None:
                return
            while len(node) <= idx:
                node.append(None)
            if last:
                node[idx] = value
                return
            if not isinstance(node[idx], (dict, list)):
                nxt = keys[i + 1]
                node[idx] = [] if nxt.isdigit() and len(nxt) < 3 and rng.random() < 0.8 else {}
            node = node[idx]
        else:
            if last:
                node[k] = value
                return
            if not isinstance(node.get(k), (dict, list)):
                nxt = keys[i + 1]
                node[k] = [] if nxt.isdigit() and len(nxt) < 3 and rng.random() < 0.8 else {}
            node = node[k]


def record_for(rng, m, absent=None, clean=False):
    """A record for mapping m: clean (every value converts) or noisy (some values are
    edge cases or of the wrong type, some are absent)."""
    rec = {}
    order_cat = next((c for n, _, c in m.cols if n == m.order), "int")
    if clean or rng.random() < 0.45:
        bad, missing = 0.0, 0.0 if absent is None else absent / 5
    else:
        bad = rng.choice([0.02, 0.05, 0.15, 0.4])
        missing = rng.choice([0.0, 0.02, 0.1]) if absent is None else absent
    for name, source, cat in m.cols:
        keys = path_keys(source)
        if keys is None or rng.random() < missing:
            continue
        noisy = rng.random() < bad
        if name in m.keys:
            val = key_value(rng, cat, noisy)
        elif name == m.order:
            val = version_value(rng, cat, noisy)
        else:
            val = value_for(rng, cat) if noisy else good_value(rng, name, cat)
        set_path(rng, rec, keys, val)
    if "id" not in rec and rng.random() < 0.8:
        rec["id"] = rng.choice(TEXT_KEYS)
    if "updated_idx" not in rec and rng.random() < 0.8:
        rec["updated_idx"] = version_value(rng, order_cat if m.order else "int", bad > 0)
    noisy = bad > 0
    r = rng.random()
    if r < 0.1:
        rec["deleted"] = False
    elif r < 0.2:
        rec["deleted"] = True
    elif r < 0.23 and noisy:
        rec["deleted"] = rng.choice(["true", 1, 0, None, Obj([]), [], "false", Raw("1e400")])
    if rng.random() < 0.2:
        for i in range(rng.randint(1, 3)):
            rec[rand_key(rng) if noisy else "noise%d" % i] = rand_json(rng, poison=noisy)
    coll = m.coll
    r = rng.random() if noisy else 1.0
    if r < 0.03:
        coll = rng.choice([1, Raw("1e400"), [m.coll], None, Obj([("a", m.coll)]), True, ""])
    elif r < 0.06:
        coll = rng.choice([m.coll.upper(), m.coll + " ", "t:none", "\u00fcnknown", m.coll + "\u0301",
                           "t:all\u200b", "".join(rng.choices(ALPHABET, k=rng.choice([300, 3000])))])
    pairs = [("collection_id", coll)] + [(k, v) for k, v in rec.items() if k != "collection_id"]
    if rng.random() < 0.08:  # duplicate keys: the last one wins in jsonb
        k, v = rng.choice(pairs)
        pairs.append((k, rand_json(rng) if noisy and rng.random() < 0.5 else v))
        if noisy and rng.random() < 0.3:
            pairs.append(("collection_id", rng.choice([m.coll, "t:all", 5])))
    if rng.random() < 0.3:
        rng.shuffle(pairs)
    if noisy and rng.random() < 0.02:
        return Obj([("collection_id", m.coll)])  # only a collection
    return Obj(pairs)


def batch_for(rng, mappings, n=None):
    if n is None:
        n = rng.choice([1, 1, 1, 2, 3, 4, 5, 8, 12, 20, 40])
    recs = []
    for _ in range(n):
        r = rng.random()
        if r < 0.02:
            recs.append(rng.choice([None, 1, "x", [], Obj([]), [Obj([("collection_id", "t:all")])],
                                    True]))
        else:
            recs.append(record_for(rng, rng.choice(mappings)))
    if n == 1 and rng.random() < 0.6:
        return recs[0]
    return recs


def mutate_text(rng, text):
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        if not chars:
            break
        op = rng.random()
        i = rng.randrange(len(chars))
        if op < 0.25:
            del chars[i]
        elif op < 0.5:
            chars.insert(i, rng.choice('{}[]":,0123456789.eE-+ \\tnufalsx'))
        elif op < 0.65:
            j = min(len(chars), i + rng.randint(1, 20))
            chars[i:i] = chars[i:j]
        elif op < 0.8:
            chars = chars[:i]
        else:
            chars.insert(i, rng.choice(["1e400", "9" * 50, '"\\u0000"', "null", '"\\ud800"',
                                        '{"a":1,"a":2}', "[" * 50 + "]" * 50, "-0", "0.0"]))
    return "".join(chars)


# ---------------------------------------------------------------------------------------
# Cases: each a list of (kind, sql, arg)


def upsert_step(json_text):
    arg = lit(json_text)
    return ("upsert", "SELECT * FROM sequin.sequin_upsert(%s::jsonb)" % arg, arg)


def upsert_null():
    return ("upsert", "SELECT * FROM sequin.sequin_upsert(NULL)", "NULL")


def staging_step(rng, records):
    if records and rng.random() < 0.5:
        values = ", ".join("(%s::jsonb)" % lit(dumps(r, rng)) for r in records)
        return ("staging", "INSERT INTO sequin.staging(record) VALUES " + values, None)
    return ("staging", "INSERT INTO sequin.staging(record) SELECT pg_catalog.jsonb_array_elements(%s::jsonb)"
            % lit(dumps(list(records), rng)), None)


def explain_step(coll):
    return ("explain", "SELECT * FROM sequin.explain_mapping(%s)" % lit(coll), None)


def sources_for(rng, column, weird=True):
    r = rng.random() if weird else rng.random() * 0.7
    if r < 0.45:
        return "data." + column
    if r < 0.6:
        return ["data", column]
    if r < 0.7:
        return rng.choice(["id", "updated_idx", "data", "deleted", "collection_id",
                           "upstream_updated_at"])
    if r < 0.78:
        return rng.choice(["data.x.0." + column, "data.0.1." + column, "data.items.3.a",
                           "0", "0.0.0", "data.999999999", "data.0000000001", "data.-1",
                           "data.\u00fc.\U0001D11E", "data." + column + ".", "data.a b"])
    return rng.choice(["", ".", "a..b", ".a", "a.", "$now", "$NOW", "$now ", " $now", [], [""],
                       ["a", 1], ["a", None], [["a"]], Obj([("a", 1)]), 1, Raw("1e400"),
                       Raw("-1e400"), Raw("1" + "0" * 400), True, None, "a" * 10000, ["$now"],
                       Raw('"\\u0000"'), Raw('"data.\\ud800"'), Obj([]), [Raw("1e309")], Raw("-0"),
                       "data." + "a." * 300 + "x", ["data"] * 200])


def arr_setting(rng, names, allow_empty=True):
    r = rng.random()
    if r < 0.05:
        return Raw(rng.choice(["'{}'", "'{NULL}'", "'{\"\"}'", "'{{a,b}}'", "'{a'", "'{}'::int[]",
                               "ARRAY[NULL]::text[]", "'{\"a.b\"}'"]))
    k = rng.randint(1 if not allow_empty else 0, min(3, len(names)))
    picked = rng.sample(names, k) if names else []
    if rng.random() < 0.1 and picked:
        picked.append(picked[0])
    if rng.random() < 0.05:
        picked.append(None)
    if rng.random() < 0.05:
        picked.append(rng.choice(["nope", "", "ID", "id ", "\u00fc"]))
    return picked


UNIQUE_KEYS = {"fz_comp": ["a", "b"], "fz_nopk": ["a"]}
UNMAPPABLE = {"gen", "ident"}


def fuzz_mapping(rng, case_id):
    """A random mapping and the Mapping model used to feed it records: about half are
    plausible (they should be accepted), the others have something odd anywhere."""
    coll = "fz:%d" % case_id
    weird = rng.random() < 0.45
    if weird and rng.random() < 0.2:
        table = rng.choice(OTHER_TARGETS)
        cols_info = rng.choice([[("k", "int"), ("v", "int")], [("record", "any"), ("id", "int")],
                                [("collection_id", "text"), ("target_table", "text"),
                                 ("columns", "any")], [("relname", "text")]])
    else:
        table = rng.choice(list(TABLES) + ["fz_all"] * 4 + ["fz_wide"])
        cols_info = TABLES[table]
    if not weird:
        cols_info = [c for c in cols_info if c[0] not in UNMAPPABLE]
    n = rng.randint(1, len(cols_info)) if rng.random() < 0.7 else len(cols_info)
    chosen = rng.sample(cols_info, n)
    pk = cols_info[0][0]
    must = UNIQUE_KEYS.get(table, [pk])
    if not weird or rng.random() < 0.8:
        for k in must:
            if k not in [c for c, _ in chosen]:
                chosen.insert(0, next(c for c in cols_info if c[0] == k))
    cols = []
    for name, cat in chosen:
        if name in must and rng.random() < 0.3:
            cols.append((name, "id", cat))
        else:
            cols.append((name, sources_for(rng, name, weird), cat))
    if weird and rng.random() < 0.2:
        cols.append((rng.choice(["nope", "", "ID", "\u00fc", "x" * 100, "gen", "ident", "a.b",
                                 "ctid", "xmin", "tableoid", "oid"]), "data.n", "int"))
    names = [c for c, _, _ in cols]
    pairs = [(c, s) for c, s, _ in cols]
    if rng.random() < 0.05 and pairs:
        pairs.append((pairs[0][0], rng.choice(["data.dup", 1, None]) if weird else "data.dup"))
    columns_text = dumps(Obj(pairs), rng)
    r = rng.random() if weird else 1.0
    if r < 0.1:
        columns_text = rng.choice(["{}", "[]", "null", "1", '"id"', '{"id": null}', "[{\"id\": \"id\"}]"])
    elif r < 0.2:
        columns_text = mutate_text(rng, columns_text)

    vs = [c for c in names if c == "v"]
    if weird:
        conflict = None if rng.random() < 0.5 else arr_setting(rng, names + [pk], allow_empty=rng.random() < 0.1)
        keep = None if rng.random() < 0.7 else arr_setting(rng, names)
        order = None
        if rng.random() < 0.6:
            order = vs[0] if vs and rng.random() < 0.7 else rng.choice(names + ["nope", "", "V"])
        on_delete = None
        if rng.random() < 0.5:
            on_delete = rng.choice(["delete", "upsert", "ignore", "DELETE", "", " delete", "soft", None])
        required = None
        r = rng.random()
        if r < 0.12:
            required = []
        elif r < 0.35:
            required = arr_setting(rng, names)
    else:
        conflict = must if table in UNIQUE_KEYS or rng.random() < 0.2 else None
        others = [c for c in names if c not in must]
        keep = rng.sample(others, rng.randint(0, min(3, len(others)))) if rng.random() < 0.3 else None
        order = vs[0] if vs and rng.random() < 0.8 else None
        on_delete = rng.choice([None, "delete", "upsert", "ignore"])
        r = rng.random()
        required = [] if r < 0.12 else (rng.sample(names, rng.randint(1, min(3, len(names))))
                                        if r < 0.35 else None)

    keys = conflict if isinstance(conflict, list) and conflict else [pk]
    model = Mapping(coll, table, cols, order=order, keys=[k for k in keys if k])

    style = rng.random()
    if style < 0.45:
        args = [lit(coll), lit(table), lit(columns_text) + "::jsonb"]
        named = []
        if conflict is not None:
            named.append("conflict_columns => " + text_array(conflict))
        if keep is not None:
            named.append("keep_on_conflict => " + text_array(keep))
        if order is not None:
            named.append("order_column => " + lit(order))
        if on_delete is not None or rng.random() < 0.05:
            named.append("on_delete => " + lit(on_delete))
        if required is not None:
            named.append("required => " + text_array(required))
        sql = "SELECT sequin.create_mapping(%s)" % ", ".join(args + named)
        kind = "create_mapping"
    else:
        cols_sql = ["collection_id", "target_table", "columns"]
        vals = [lit(coll), lit(table), lit(columns_text)]
        for col, val in (("conflict_columns", conflict), ("keep_on_conflict", keep),
                         ("required", required)):
            if val is not None:
                cols_sql.append(col)
                vals.append(text_array(val))
        if order is not None:
            cols_sql.append("order_column")
            vals.append(lit(order))
        if on_delete is not None or rng.random() < 0.05:
            cols_sql.append("on_delete")
            vals.append(lit(on_delete))
        sql = "INSERT INTO sequin.mappings (%s) VALUES (%s)" % (", ".join(cols_sql), ", ".join(vals))
        kind = "mapping_insert"
    return model, (kind, sql, None)


def case_records(rng, fixed):
    steps = []
    if rng.random() < 0.1:
        steps.append(("set", "SET sequin.batch_size = %d" % rng.choice([1, 2, 3, 7]), None))
    for _ in range(rng.randint(1, 3)):
        pool = fixed if rng.random() < 0.3 else [rng.choice(fixed)]
        steps.append(upsert_step(dumps(batch_for(rng, pool), rng)))
    if steps[0][0] == "set":
        steps.append(("set", "RESET sequin.batch_size", None))
    return steps


def case_staging(rng, fixed):
    steps = []
    deferred = rng.random() < 0.25
    if deferred:
        steps.append(("set", "SET sequin.apply_mode = deferred", None))
    recs = batch_for(rng, [rng.choice(fixed)] if rng.random() < 0.6 else fixed,
                     rng.choice([1, 2, 5, 10, 30]))
    if not isinstance(recs, list):
        recs = [recs]
    if rng.random() < 0.1:
        recs.append(None)  # SQL NULL record: a NOT NULL violation
        values = ", ".join("(%s::jsonb)" % lit(None if r is None else dumps(r, rng)) for r in recs)
        steps.append(("staging", "INSERT INTO sequin.staging(record) VALUES " + values, None))
    elif rng.random() < 0.15:
        steps.append(("inbox", "INSERT INTO fz_inbox(record) SELECT pg_catalog.jsonb_array_elements(%s::jsonb)"
                      % lit(dumps(recs, rng)), None))
    else:
        steps.append(staging_step(rng, recs))
    if deferred:
        steps.append(("apply", "SELECT * FROM sequin.apply_staging(max_rows => %s, retry_failed => %s)"
                      % (rng.choice(["NULL", "1", "5", "0", "-1"]), rng.choice(["true", "false"])), None))
        steps.append(("set", "RESET sequin.apply_mode", None))
    elif rng.random() < 0.1:
        steps.append(("apply", "SELECT * FROM sequin.apply_staging(retry_failed => true)", None))
    return steps


def case_mapping(rng, case_id, fixed):
    model, step = fuzz_mapping(rng, case_id)
    steps = [step]
    for _ in range(rng.randint(1, 3)):
        n = rng.choice([1, 1, 2, 3, 5, 10])
        recs = [record_for(rng, model, absent=0.15) for _ in range(n)]
        steps.append(upsert_step(dumps(recs if n > 1 or rng.random() < 0.5 else recs[0], rng)))
    if rng.random() < 0.5:
        steps.append(explain_step(model.coll))
    if rng.random() < 0.25:
        steps.append(staging_step(rng, [record_for(rng, model) for _ in range(rng.randint(1, 4))]))
    if rng.random() < 0.15:
        change = rng.choice(["order_column = NULL", "required = '{}'", "on_delete = 'upsert'",
                             "conflict_columns = NULL", "keep_on_conflict = '{}'",
                             "columns = columns || '{\"nope\": \"x\"}'", "target_table = 'fz_int'",
                             "columns = '{}'", "collection_id = 't:all'"])
        steps.append(("mapping_update", "UPDATE sequin.mappings SET %s WHERE collection_id = %s"
                      % (change, lit(model.coll)), None))
        steps.append(upsert_step(dumps(record_for(rng, model), rng)))
    if rng.random() < 0.3:
        steps.append(("maint", "DELETE FROM sequin.mappings WHERE collection_id = %s" % lit(model.coll), None))
    return steps


def case_explain(rng, case_id, fixed):
    coll = rng.choice([m.coll for m in fixed] + ["fz:%d" % max(0, case_id - rng.randint(1, 30)),
                       "", "nope", "T:ALL", "t:all ", "x" * 100000, "\u00fc\U0001D11E", None,
                       "t:all'; DROP TABLE fz_all; --", "%s%n"])
    return [explain_step(coll)]


def case_mutate(rng, fixed):
    text = dumps(batch_for(rng, [rng.choice(fixed)]), rng)
    return [upsert_step(mutate_text(rng, text))]


def case_evil(rng, fixed):
    evil = next(m for m in fixed if m.coll == "t:evil")
    recs = [record_for(rng, evil, absent=0.02) for _ in range(rng.randint(1, 4))]
    steps = [upsert_step(dumps(recs, rng))]
    if rng.random() < 0.3:
        steps.append(staging_step(rng, recs))
    return steps


def case_extreme(rng, case_id, fixed, pick=None, wide=None):
    m = rng.choice(fixed[:6])
    if pick is None:
        pick = rng.randrange(12)
    big = "x" * (1 << 20)
    if pick == 0:  # deep nesting in a mapped value
        col = rng.choice(["jb", "js", "txt", "ia", "ja", "b", "pair"])
        rec = Obj([("collection_id", "t:all"), ("id", "deep%d" % case_id), ("updated_idx", 1),
                   ("data", Obj([(col, deep(rng.choice([100, 1000, 5000]), rng.choice(["array", "object"])))]))])
        return [upsert_step(dumps(rec, rng))]
    if pick == 1:  # deep nesting in an unmapped field, and as the batch itself
        rec = record_for(rng, m)
        rec.pairs.append(("noise", deep(5000, rng.choice(["array", "object"]))))
        return [upsert_step(dumps(rec, rng)), upsert_step("[" * 3000 + "{}" + "]" * 3000),
                upsert_step("[" * 100000 + "]" * 100000)]
    if pick == 2:  # 1 MB strings
        col = rng.choice(["txt", "vc3", "jb", "by", "u", "ts", "nm", "js", "ta", "x", "tsv"])
        rec = Obj([("collection_id", "t:all"), ("id", "big%d" % rng.randint(0, 3)), ("updated_idx", 2),
                   ("data", Obj([(col, big if col != "ta" else [big, big])]))])
        return [upsert_step(dumps(rec, rng))]
    if pick == 3:  # 1 MB key, collection_id, id
        which = rng.choice(["id", "collection_id", "key"])
        rec = Obj([("collection_id", big if which == "collection_id" else "t:all"),
                   ("id", big if which == "id" else "k1"), ("updated_idx", 3)])
        return [upsert_step(dumps(rec, rng)), staging_step(rng, [rec])]
    if pick == 4:  # a 10000-segment path
        seg = rng.choice(["a", "0"])
        path = ".".join([seg] * 10000)
        coll = "fz:%d" % case_id
        steps = [("create_mapping", "SELECT sequin.create_mapping(%s, 'fz_all', %s::jsonb)" % (
            lit(coll), lit(dumps(Obj([("id", "id"), ("jb", path), ("txt", ["data"] + [seg] * 3000)])))), None)]
        val = deep(9999, "object" if seg == "a" else "array", '"leaf"')
        rec = Obj([("collection_id", coll), ("id", "longpath"), ("a" if seg == "a" else "0", val)])
        if seg == "0":
            rec = Obj([("collection_id", coll), ("id", "longpath"), ("0", val)])
        steps += [upsert_step(dumps(rec, rng)), explain_step(coll)]
        return steps
    if pick == 5:  # numbers at every edge into every numeric-ish column
        nums = INT_EDGES + NUM_EXTRA + FLOAT_EXTRA + TIME_NUMBERS
        col = rng.choice(["i2", "i4", "i8", "num", "n52", "f4", "f8", "ts", "ts0", "tstz", "d", "txt",
                          "vc3", "b", "jb", "mny", "o", "ia", "n41a", "pos", "nnd", "chk"])
        recs = [Obj([("collection_id", "t:all_noorder"), ("id", "num%d" % i),
                     ("data", Obj([(col, nums[i])]))]) for i in range(len(nums))]
        return [upsert_step(dumps(r, rng)) for r in recs[:40]] + [upsert_step(dumps(recs, rng))]
    if pick == 6:  # wrong types for the record's own fields
        steps = []
        for field, values in (("collection_id", [1, [], None, Obj([]), True, Raw("1e400"), ""]),
                              ("deleted", ["true", 1, Obj([]), [], Raw("-0"), "yes"]),
                              ("updated_idx", ["7", Obj([]), [1], Raw("1.5"), Raw("1e400"), True,
                                               "2024-01-01", 9223372036854775808])):
            for v in values:
                rec = Obj([("collection_id", "t:all"), ("id", "wt"), ("updated_idx", 5), (field, v)])
                steps.append(upsert_step(dumps(rec, rng)))
        return steps
    if pick == 7:  # a huge batch, small chunks
        n = rng.choice([2000, 5000])
        small = [f for f in fixed if f.coll in ("t:int", "t:comp", "t:part", "t:uuid", "t:numkey")]
        recs = [record_for(rng, rng.choice(small), clean=True) for _ in range(n)]
        return [("set", "SET sequin.batch_size = %d" % rng.choice([1, 7, 100]), None),
                upsert_step(dumps(recs, rng)), ("set", "RESET sequin.batch_size", None)]
    if pick == 8:  # a mapping with more columns than a function may have parameters
        coll = "fz:%d" % case_id
        n = wide or rng.choice([90, 99, 100, 101, 110, WIDE_COLUMNS])
        cols = Obj([("id", "id")] + [("c%d" % i, "data.c%d" % i) for i in range(n)])
        rec = Obj([("collection_id", coll), ("id", "w"),
                   ("data", Obj([("c%d" % i, i) for i in range(n)]))])
        return [("create_mapping", "SELECT sequin.create_mapping(%s, 'fz_wide', %s::jsonb)" % (
            lit(coll), lit(dumps(cols))), None), upsert_step(dumps(rec, rng)), explain_step(coll)]
    if pick == 9:  # huge digit strings
        digits = rng.choice([1000, 100000, 131072, 131073])
        num = Raw("1" * digits) if rng.random() < 0.5 else Raw("0." + "0" * digits + "1")
        col = rng.choice(["num", "n52", "i8", "f8", "ts", "txt", "jb"])
        rec = Obj([("collection_id", "t:all_noorder"), ("id", "digits"), ("data", Obj([(col, num)]))])
        return [upsert_step(dumps(rec, rng)),
                upsert_step(dumps(Obj([("collection_id", "t:all"), ("id", "digits"), ("updated_idx", num)]), rng))]
    if pick == 10:  # odd Unicode everywhere
        steps = []
        for s in POISON + STRINGS[:20]:
            rec = Obj([("collection_id", "t:weird"), ("id", s), ("data", Obj([("select", s), ("with space", 1)]))])
            steps.append(upsert_step(dumps(rec, rng)))
        return steps
    # pick == 11: many mappings at once, the same collection twice, mapping rows of every shape
    coll = "fz:%d" % case_id
    rows = ", ".join("(%s, 'fz_int', %s)" % (lit(coll if i % 2 else coll + ":%d" % i),
                                            lit(dumps(Obj([("k", "id"), ("note", "data.n%d" % i)]))))
                     for i in range(rng.randint(2, 6)))
    return [("mapping_insert", "INSERT INTO sequin.mappings (collection_id, target_table, columns) VALUES " + rows, None),
            ("mapping_insert", "INSERT INTO sequin.mappings (collection_id, target_table, columns) "
             "SELECT 'fz:%d:' || i, 'fz_int', jsonb_build_object('k', 'id') FROM generate_series(1, 50) i" % case_id, None),
            ("maint", "DELETE FROM sequin.mappings WHERE collection_id LIKE %s" % lit("fz:%d:%%" % case_id), None)]


def corpus(fixed):
    """Cases that every run starts with: one per hostile-input theme of the brief."""
    r = random.Random(0)
    good = []
    for m in fixed:  # a plausible record for each fixed mapping
        good.append(upsert_step(dumps(Obj([("collection_id", m.coll), ("id", "1"), ("updated_idx", 1),
                                           ("data", Obj([]))]), r)))
    cases = [good]
    cases.append([  # a key left out of `required`, record without the key
        ("create_mapping", "SELECT sequin.create_mapping('fz:c:nullkey', 'fz_all', '{\"id\": \"id\", \"txt\": \"data.txt\"}', required => '{}')", None),
        upsert_step('{"collection_id": "fz:c:nullkey", "data": {"txt": "no id"}}')])
    cases.append([  # a number too large for a double in the columns object
        ("create_mapping", "SELECT sequin.create_mapping('fz:c:1e400', 'fz_all', '{\"id\": \"id\", \"txt\": 1e400}')", None),
        ("mapping_insert", "INSERT INTO sequin.mappings (collection_id, target_table, columns) VALUES ('fz:c:1e309', 'fz_all', '{\"id\": \"id\", \"txt\": [\"data\", 1e309]}')", None)])
    for pick in range(12):
        cases.append(("extreme", pick))
    return cases


def make_case(seed, case_id, fixed=None):
    fixed = fixed or fixed_mappings()
    rng = random.Random("%s/%d" % (seed, case_id))
    cor = corpus(fixed)
    if case_id < len(cor):
        c = cor[case_id]
        if isinstance(c, tuple):  # an extreme case with a fixed pick
            steps = case_extreme(rng, case_id, fixed, pick=c[1], wide=WIDE_COLUMNS)
        else:
            steps = c
    else:
        r = rng.random()
        if r < 0.36:
            steps = case_records(rng, fixed)
        elif r < 0.48:
            steps = case_staging(rng, fixed)
        elif r < 0.74:
            steps = case_mapping(rng, case_id, fixed)
        elif r < 0.79:
            steps = case_explain(rng, case_id, fixed)
        elif r < 0.87:
            steps = case_mutate(rng, fixed)
        elif r < 0.91:
            steps = case_evil(rng, fixed)
        elif r < 0.95:
            steps = [upsert_step(rng.choice(["null", "1", '"x"', "[]", "[null]", "[[]]", "{}", "[{}]",
                                             "true", '[1, {"collection_id": "t:all"}]'])), upsert_null()]
        else:
            steps = case_extreme(rng, case_id, fixed)
    if case_id % 40 == 39:  # keep the queue and the catalog small
        steps = list(steps) + [("maint", "DELETE FROM sequin.staging", None),
                               ("maint", "DELETE FROM sequin.mappings WHERE collection_id LIKE 'fz:%'", None)]
    return steps


def copy_field(s):
    if s is None:
        return "\\N"
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", action="store_true")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--case", type=int)
    ap.add_argument("--max-chars", type=int, default=0, help="with --case: cut statements longer than this")
    args = ap.parse_args()
    sys.setrecursionlimit(10000)
    out = sys.stdout
    if args.setup:
        out.write(setup_sql())
        return
    fixed = fixed_mappings()
    if args.case is not None:
        out.write("-- case %d of seed %s (after gen.py --setup; earlier cases may have changed the targets)\n"
                  % (args.case, args.seed))
        for step, (kind, sql, _) in enumerate(make_case(args.seed, args.case, fixed)):
            if args.max_chars and len(sql) > args.max_chars:
                sql = sql[:args.max_chars] + " ...(%d chars)" % len(sql)
            out.write("-- step %d (%s)\n%s;\n" % (step, kind, sql))
        return
    for case_id in range(args.first, args.first + args.count):
        for step, (kind, sql, arg) in enumerate(make_case(args.seed, case_id, fixed)):
            seq = case_id * 1000 + step
            out.write("%d\t%d\t%d\t%s\t%s\t%s\n" % (seq, case_id, step, kind, copy_field(sql),
                                                    copy_field(arg)))


if __name__ == "__main__":
    main()
