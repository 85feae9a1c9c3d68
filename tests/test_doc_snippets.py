"""Every gin snippet in README.md and docs/*.md parses (with every configurable registered and
the refusals of mmdistill/config.py), so a documented binding is never one the code refuses or
would ignore; every --gin_param in a documented command parses too."""
import re
import shlex
import sys

import gin
import pytest

from doc_snippets import ROOT, blocks, doc_files, looks_like_gin
from mmdistill.config import ConfigError, parse_config

sys.path.insert(0, str(ROOT))
import run  # noqa: E402

run.import_configurables()

ALL_BLOCKS = [b for path in doc_files() for b in blocks(path)]
GIN_BLOCKS = [b for b in ALL_BLOCKS if b.language == "gin"]
GIN_PARAM = re.compile(r"--gin[_-](?:param|bindings)[ =]")


def _command_bindings():
    """(where, binding) for each --gin_param of a documented command (shell-quoted)."""
    found = []
    for block in ALL_BLOCKS:
        text = block.text.replace("\\\n", " ")
        for line in text.splitlines():
            if not GIN_PARAM.search(line):
                continue
            words = shlex.split(line.split(" #")[0])
            for i, word in enumerate(words):
                if word in ("--gin_param", "--gin-param", "--gin_bindings") and i + 1 < len(words):
                    found.append((block.where, words[i + 1]))
                elif word.startswith(("--gin_param=", "--gin-param=")):
                    found.append((block.where, word.split("=", 1)[1]))
    return found


COMMAND_BINDINGS = _command_bindings()


def test_the_docs_have_gin_snippets_and_documented_bindings():
    assert len(GIN_BLOCKS) >= 8 and len(COMMAND_BINDINGS) >= 5


def test_every_gin_looking_block_is_tagged_gin():
    untagged = [b.where for b in ALL_BLOCKS if b.language != "gin" and looks_like_gin(b.text)
                and b.language not in ("bash", "sh", "python")]
    assert not untagged, f"tag these gin snippets ```gin so the test parses them: {untagged}"


def test_an_untagged_gin_block_would_be_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```\nteacher_flow/pretrained.path = 'x'\n```\n\n    fewshot.n_way = 3\n")
    found = blocks(page)
    assert [looks_like_gin(b.text) for b in found] == [True, True]


@pytest.mark.parametrize("block", GIN_BLOCKS, ids=lambda b: b.where)
def test_every_gin_snippet_parses(block, tmp_path):
    snippet = tmp_path / "snippet.gin"
    snippet.write_text(block.text + "\n")
    try:
        parse_config([snippet], finalize=False)
    except ConfigError as err:
        pytest.fail(f"{block.where}: {err}")


@pytest.mark.parametrize("where, binding", COMMAND_BINDINGS, ids=[w for w, _ in COMMAND_BINDINGS])
def test_every_documented_gin_param_parses(where, binding):
    try:
        parse_config([], [binding], finalize=False)
    except ConfigError as err:
        pytest.fail(f"{where}: {err}")


def test_a_refused_binding_in_a_snippet_fails_the_parse(tmp_path):
    snippet = tmp_path / "snippet.gin"
    snippet.write_text("fewshot.n_way = 3\n")
    with pytest.raises(ConfigError, match="fewshot.settings"):
        parse_config([snippet], finalize=False)
    gin.clear_config()
