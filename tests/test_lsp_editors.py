"""The editor files: the TextMate grammar's rules match what they name, and the
VS Code extension registers the language, the grammar and the server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

EDITORS = Path(__file__).resolve().parents[1] / "editors"
GRAMMAR = json.loads((EDITORS / "textmate" / "flow.tmLanguage.json").read_text(encoding="utf-8"))
RULES = GRAMMAR["repository"]


def regexes(node) -> list[str]:
    if isinstance(node, dict):
        found = [node[k] for k in ("match", "begin", "end") if k in node]
        return found + [r for v in node.values() for r in regexes(v)]
    if isinstance(node, list):
        return [r for v in node for r in regexes(v)]
    return []


@pytest.mark.parametrize("pattern", regexes(GRAMMAR))
def test_every_rule_is_a_valid_regex(pattern: str):
    re.compile(pattern)


def captured(rule: str, text: str) -> dict[str, str]:
    """The scope names a rule gives to the pieces of `text`."""
    found = re.search(RULES[rule]["match"], text)
    assert found, f"{rule} does not match {text!r}"
    return {found.group(int(n)): c["name"] for n, c in RULES[rule]["captures"].items() if found.group(int(n))}


def scope_of(text: str, rules: list[dict]) -> str:
    """The scope of the first plain rule that matches all of `text`."""
    return next(r["name"] for r in rules if "match" in r and re.fullmatch(r["match"], text))


def test_steps_actions_flows_and_lets_are_named():
    assert captured("step", "    dhcp = proxy.dhcp_reserve(subnet: s)")["dhcp"] == "entity.name.variable.step.weft"
    assert re.search(RULES["step"]["match"], "    x == y") is None  # a comparison names no step
    assert captured("action-call", "std.file.append(path: p)") == {
        "std": "entity.name.namespace.alias.weft",
        ".file": "entity.name.namespace.weft",
        "append": "entity.name.function.action.weft",
    }
    assert captured("declaration", "flow create_host(name: str)")["create_host"] == "entity.name.function.flow.weft"
    assert captured("let", 'let fqdn = "x"')["fqdn"] == "entity.name.variable.let.weft"
    assert captured("use", "use examples.foreman.proxy as proxy")["proxy"] == "entity.name.namespace.alias.weft"


def test_keywords_literals_and_comments():
    keywords = RULES["keyword"]["patterns"]
    for word in ("retry", "backoff", "undo", "finalize", "after", "queue", "each", "concurrency", "wait", "return"):
        assert scope_of(word, keywords) == "keyword.control.weft"
    assert scope_of("on failure", keywords) == "keyword.control.weft"
    expression = RULES["expression"]["patterns"]
    assert scope_of("true", expression) == "constant.language.weft"
    assert scope_of("not", expression) == "keyword.operator.logical.weft"
    for number in ("3", "2s", "1.5h", "250ms", "1e6"):
        assert re.fullmatch(RULES["number"]["match"], number), number
    assert re.fullmatch(RULES["comment"]["match"], "# a comment")


def test_strings_interpolate_expressions():
    string = RULES["string-double"]
    assert string["name"] == "string.quoted.double.weft"
    assert {"include": "#interpolation"} in string["patterns"]
    interpolation = RULES["interpolation"]
    assert re.match(interpolation["begin"], "${dhcp.ip}") and re.match(interpolation["end"], "}")
    assert interpolation["patterns"] == [{"include": "#expression"}]
    assert re.fullmatch(RULES["escape"]["match"], "\\$")


def test_vscode_extension_registers_language_grammar_and_server():
    folder = EDITORS / "vscode"
    package = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    [language] = package["contributes"]["languages"]
    assert language["id"] == "weft" and language["extensions"] == [".flow"]
    assert (folder / language["configuration"]).is_file()
    [grammar] = package["contributes"]["grammars"]
    linked = json.loads((folder / grammar["path"]).read_text(encoding="utf-8"))
    assert grammar["language"] == "weft" and grammar["scopeName"] == linked["scopeName"] == GRAMMAR["scopeName"]
    assert (folder / package["main"]).is_file()
    assert package["contributes"]["configuration"]["properties"]["weft.command"]["default"] == ["weft", "lsp"]
    assert "vscode-languageclient" in package["dependencies"]
