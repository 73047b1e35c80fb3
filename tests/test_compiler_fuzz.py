"""Property tests: whatever a .flow file holds, `compile_paths` returns diagnostics and never raises.

Three sources of input: random text over the language's own vocabulary,
random edits (delete, insert, duplicate, swap chunks) of the valid fixtures
and the examples, and random bytes. Each input is written to a file and
compiled like `weft check` does.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weft.compiler import compile_paths
from weft.compiler.diagnostics import CODES

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = [p.read_text(encoding="utf-8") for p in sorted((FIXTURES / "valid").glob("*.flow"))] + [
    p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples").rglob("*.flow"))
]

# Names are few and harmless, so random text never `use`s an arbitrary Python module.
VOCABULARY = [
    "flow",
    "extend",
    "use",
    "import",
    "as",
    "meta",
    "label",
    "tags",
    "lock",
    "let",
    "each",
    "in",
    "concurrency",
    "wait",
    "retry",
    "backoff",
    "timeout",
    "undo",
    "on error",
    "on success",
    "on failure",
    "pause",
    "rollback",
    "when",
    "weight",
    "after",
    "queue",
    "concurrency",
    "sequence",
    "finalize",
    "return",
    "true",
    "false",
    "none",
    "and",
    "or",
    "not",
    "std",
    "log",
    "echo",
    "message",
    "value",
    "a",
    "b",
    "f",
    "x",
    "str",
    "int",
    "list",
    "dict",
    "any",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    ".",
    "=",
    "->",
    "?",
    "??",
    '"Content-Type":',
    '["k"]',
    "|",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    ">=",
    "0",
    "42",
    "1.5",
    "2s",
    "3x",
    "1.2.3",
    '"s"',
    '"${a}"',
    '"${',
    "'t'",
    '"\\q"',
    '"open',
    "#",
    "\n",
    " ",
    "\t",
    "std.log",
    "std.echo",
    "actions.inventory",
    "inv",
    "inv.allocate",
    "name",
]

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_compiles(directory: Path, text: str) -> None:
    path = directory / "fuzzed.flow"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = compile_paths([str(path)])
    for d in result.diagnostics:
        assert d.code in CODES and d.severity == CODES[d.code][1]
        assert d.span.line >= 1 and d.span.col >= 1
        assert isinstance(d.message, str) and d.message
    if not result.has_errors and result.flows:
        plan = result.plan()
        assert plan["format"] == "weft.plan"


@st.composite
def edited(draw) -> str:
    """A valid source with a few chunks deleted, inserted, duplicated or swapped."""
    text = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 80)))
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "swap", "token"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.text(max_size=12)) + text[i:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "token":
            text = text[:i] + draw(st.sampled_from(VOCABULARY)) + text[i:]
        else:
            k = draw(st.integers(j, n))
            m = draw(st.integers(k, min(n, k + 80)))
            text = text[:i] + text[k:m] + text[j:k] + text[i:j] + text[m:]
    return text


@SETTINGS
@given(st.lists(st.sampled_from(VOCABULARY), max_size=60).map(" ".join))
def test_random_token_soup(tmp_path_factory, text):
    check_compiles(tmp_path_factory.mktemp("soup"), text)


@SETTINGS
@given(edited())
def test_edited_valid_sources(tmp_path_factory, text):
    check_compiles(tmp_path_factory.mktemp("edited"), text)


@settings(SETTINGS, max_examples=60)
@given(st.binary(max_size=400))
def test_random_bytes(tmp_path_factory, data):
    check_compiles(tmp_path_factory.mktemp("bytes"), data.decode("utf-8", errors="replace"))


@settings(SETTINGS, max_examples=60)
@given(st.text(max_size=300))
def test_random_unicode_text(tmp_path_factory, text):
    check_compiles(tmp_path_factory.mktemp("text"), text)
