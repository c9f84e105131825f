"""The README's Python examples run as written, in order, as a user would run them.

Each ```python block runs statement by statement in one namespace, in a fresh folder. The
test provides only what the examples leave to the reader: the key sequences they call
``normal_sessions`` and ``sessions``, and the files they name (``normal.log``,
``today.log``, HDFS-style lines with ``blk_`` ids). An expression statement whose comment
is itself a Python expression (``r.key, r.template  # 1, 'Took <*> ...'``) must give
that value.
"""

from __future__ import annotations

import ast
import io
import random
import re
import tokenize
from pathlib import Path
from typing import Any

import pytest

from logwarden.records import Param
from synthetic import grammar

README = Path(__file__).resolve().parents[1] / "README.md"

# Names the comments' expected values may use besides the example's own.
COMMENT_NAMES: dict[str, Any] = {"Param": Param}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the opening fence, code) of every ```python block."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.M | re.S):
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


def trailing_comments(code: str) -> dict[int, str]:
    """Line -> the text of a comment at the end of that line."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def expected_value(comment: str, namespace: dict[str, Any]) -> tuple[bool, Any]:
    """(True, value) when the comment is a Python expression, else (False, None)."""
    try:
        expr = compile(comment, "<comment>", "eval")
    except SyntaxError:
        return False, None
    return True, eval(expr, {**COMMENT_NAMES, **namespace})


def run_block(code: str, first_line: int, namespace: dict[str, Any]) -> None:
    comments = trailing_comments(code)
    for stmt in ast.parse(code).body:
        where = f"README.md:{first_line + stmt.lineno}"
        try:
            if isinstance(stmt, ast.Expr):
                value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
            else:
                exec(compile(ast.Module([stmt], []), where, "exec"), namespace)
                continue
        except Exception as exc:
            pytest.fail(f"{where}: {ast.unparse(stmt)!r} raised {exc!r}")
        comment = comments.get(stmt.end_lineno or stmt.lineno)
        if comment is not None:
            is_value, want = expected_value(comment, namespace)
            if is_value:
                assert value == want, f"{where}: got {value!r}, the README says {comment}"


# --- the data the examples leave to the reader ----------------------------------------------


def hdfs_log(path: Path, blocks: int, seed: int, broken: int = 0) -> None:
    """HDFS DataNode/NameNode lines in the ``hdfs`` format: per block, an allocation, then
    per replica receiving, responder and received lines, then the block map updates.
    ``broken`` blocks get an exception line none of the others has."""
    rng = random.Random(seed)
    t = 203615
    lines = []
    for b in range(blocks):
        blk = f"blk_{rng.randint(-(10**18), 10**18)}"
        ips = [f"10.250.{rng.randint(0, 19)}.{rng.randint(2, 250)}" for _ in range(3)]
        size = rng.choice([67108864, 3542, 91178])
        entries = [
            ("dfs.FSNamesystem", f"BLOCK* NameSystem.allocateBlock: /user/root/part-{b:05d}. {blk}")
        ]
        for ip in ips:
            entries.append(
                (
                    "dfs.DataNode$DataXceiver",
                    f"Receiving block {blk} src: /{ip}:{rng.randint(30000, 60000)} dest: /{ip}:50010",
                )
            )
        if b < broken:
            entries.append(
                (
                    "dfs.DataNode$DataXceiver",
                    f"writeBlock {blk} received exception java.io.IOException: Connection reset",
                )
            )
        for i, ip in enumerate(ips):
            entries.append(
                ("dfs.DataNode$PacketResponder", f"PacketResponder {i} for block {blk} terminating")
            )
            entries.append(
                ("dfs.DataNode$PacketResponder", f"Received block {blk} of size {size} from /{ip}")
            )
        for ip in ips:
            entries.append(
                (
                    "dfs.FSNamesystem",
                    f"BLOCK* NameSystem.addStoredBlock: blockMap updated: {ip}:50010 is added to {blk} size {size}",
                )
            )
        for component, content in entries:
            t += rng.randint(0, 1)
            lines.append(f"081109 {t:06d} {rng.randint(10, 999)} INFO {component}: {content}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_readme_has_python_examples() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    # The examples this test is known to run: the miner, the estimator, the Detector.
    assert len(blocks) >= 3
    assert any("TemplateMiner" in code for _, code in blocks)
    assert any("Detector" in code for _, code in blocks)


@pytest.mark.slow
def test_readme_python_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    hdfs_log(tmp_path / "normal.log", blocks=300, seed=1)
    hdfs_log(tmp_path / "today.log", blocks=40, seed=2, broken=3)
    normal = grammar(300, seed=1)
    namespace: dict[str, Any] = {
        "normal_sessions": normal,
        # normal ones, and a reordered, a truncated and an unseen-key session
        "sessions": [*normal[:5], list("ABDCE"), list("ABC"), list("ABXCDE")],
    }
    for first_line, code in python_blocks(README.read_text(encoding="utf-8")):
        run_block(code, first_line, namespace)
    out = capsys.readouterr().out
    # The estimator's example prints the three anomalous sessions, the Detector's the
    # three broken blocks: each a verdict that explains itself.
    assert out.count("ANOMALY") >= 6, out
    assert "Connection reset" in out or "never seen" in out, out
