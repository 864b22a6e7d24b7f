#!/usr/bin/env python3
"""Checks that the top-level modules of src/ import each other only downward (part of make test).

Why: the crate is layered (HTTP edge, start-up, services, storage, infrastructure, model), and a
cycle or an upward import quietly couples layers until nothing can change alone. This reads
every src/**.rs file (not lib.rs, which only declares modules, nor main.rs, the binary) and
collects its references to other top-level modules: `use crate::x…` (nested `crate::{…}`
groups too) and inline `crate::x::` paths, outside comments, string literals and a trailing
`#[cfg(test)] mod tests` block. It fails, one line per violation, when:
  - top-level modules import each other in a cycle (of any length);
  - `model` imports another module of the crate or an I/O crate (redis, tokio, hyper, …);
  - a module of the library imports `api` (only the binary, src/main.rs, may);
  - a module found in src/ is missing from LAYERS;
  - more than MAX_UPWARD (file, module) imports point from a lower layer to a higher one.
`super::` paths are not read: from a file below src/x/ they stay inside x.

Usage: scripts/check-layers.py [--verbose | --self-test]
  --verbose    also prints the module graph (per target: how many files of the module import it).
Imports and upward imports are counted as distinct (importing file, target module) pairs.
  --self-test  runs the parser on a few inline snippets.
To try a layout, set CHECK_LAYERS_LAYERS to a JSON list of lists that replaces LAYERS, e.g.
  CHECK_LAYERS_LAYERS='[["app"],["http"],["queue"],["redis","error"]]' scripts/check-layers.py
"""

import json
import os
import re
import sys
from pathlib import Path

# From the top (may import everything below) to the bottom (imports nothing of the crate).
# Names not (yet) in src/ are ignored.
LAYERS = [
    ["api"],  # the edge: HTTP (only the binary, src/main.rs, uses it)
    ["app"],  # start-up: builds the shared state, runs the background loops
    ["housekeeping", "demo", "rebuild"],
    ["admin", "payment"],  # the services, one per capability
    ["holds", "wallet"],
    ["catalogue"],
    ["queue"],
    ["users"],
    ["fallback"],  # reads from MySQL while Redis is unreachable
    ["writebehind", "health", "reconcile"],
    ["redis", "mysql", "identity", "telemetry", "config", "shutdown"],  # infrastructure
    ["model"],  # the domain: no I/O
]
MAX_UPWARD = 8  # the known exceptions; lower it as they are removed, never raise it lightly
EDGE = "api"  # only the binary (src/main.rs, not read here) may reach the HTTP edge
CORE = "model"  # plain data: no I/O crates, no other module of the crate
IO_CRATES = "redis|mysql_async|hyper|hyper_util|http_body_util|tokio|metrics"

# Comments, then literals, scanned left to right in one pass so that `//` in a string or `"` in
# a comment cannot confuse the other. Raw strings before plain ones; chars need a closing quote
# right after one (escaped) character, which keeps lifetimes ('a) out.
NOISE = re.compile(
    r"//[^\n]*|/\*.*?\*/|(?<!\w)b?r(#*)\".*?\"\1|b?\"(?:\\.|[^\"\\])*\""
    r"|b?'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'",
    re.S,
)
TEST_TAIL = re.compile(r"^[ \t]*#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub\s+)?mod\s+tests\b", re.M)
CRATE_PATH = re.compile(r"\bcrate\s*::\s*([A-Za-z_]\w*)")
CRATE_GROUP = re.compile(r"\bcrate\s*::\s*\{")
IO_USE = re.compile(rf"(?<![\w:])(?:::)?({IO_CRATES})\s*::|\b(?:use|extern\s+crate)\s+({IO_CRATES})\b")


def code_of(text):
    """The code a build without tests sees: comments and literals blanked (lines kept)."""
    def blank(m):
        keep = "\n" * m.group(0).count("\n")
        return keep if m.group(0).startswith("/") else '""' + keep
    code = NOISE.sub(blank, text)
    tail = TEST_TAIL.search(code)
    return code[: tail.start()] if tail else code


def references(text):
    """(first path segment after `crate::`, line, path as written) for every crate path."""
    code, found = code_of(text), []
    line = lambda pos: code.count("\n", 0, pos) + 1
    for m in CRATE_PATH.finditer(code):
        found.append((m.group(1), line(m.start()), f"crate::{m.group(1)}"))
    for m in CRATE_GROUP.finditer(code):
        # Split `crate::{a::b, c::{d, e}}` at its own commas: a and c are top-level modules,
        # d and e are inside c.
        depth, start, i = 1, m.end(), m.end()
        while i < len(code) and depth:
            ch = code[i]
            depth += (ch == "{") - (ch == "}")
            if depth == 0 or (ch == "," and depth == 1):
                item = re.match(r"\s*([A-Za-z_]\w*)", code[start:i])
                if item:
                    found.append((item.group(1), line(start + item.start(1)), f"crate::{{{item.group(1)}…}}"))
                start = i + 1
            i += 1
    return found


def io_crates(text):
    code = code_of(text)
    return [(m.group(1) or m.group(2), code.count("\n", 0, m.start()) + 1) for m in IO_USE.finditer(code)]


def components(nodes, edges):
    """Strongly connected components (Tarjan) of the module graph {module: {target: …}}."""
    index, low, stack, on, out = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            out.append(sorted(comp))
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def check(root, layers, verbose):
    src = root / "src"
    files = {p: p.relative_to(src).parts[0].removesuffix(".rs") for p in sorted(src.rglob("*.rs"))
             if p.relative_to(src).as_posix() not in ("lib.rs", "main.rs")}
    modules = set(files.values())
    rank = {m: i for i, layer in enumerate(layers) for m in layer}
    where = lambda m: f"src/{m}.rs" if (src / f"{m}.rs").exists() else f"src/{m}/"
    errors = [f"layers: module `{m}` ({where(m)}) is not in LAYERS; add it to LAYERS" for m in sorted(modules - rank.keys())]
    errors += [f"layers: `{m}` appears more than once in LAYERS" for m in sorted(rank)
               if sum(layer.count(m) for layer in layers) > 1]

    # edges[a][b] = {file: (line, path)}: the first place each file of a refers to b.
    edges = {}
    for path, owner in files.items():
        text, rel = path.read_text(encoding="utf-8"), path.relative_to(root).as_posix()
        for target, line, written in references(text):
            if target in modules and target != owner:
                edges.setdefault(owner, {}).setdefault(target, {}).setdefault(rel, (line, written))
        if owner == CORE:
            for crate, line in dict(reversed(io_crates(text))).items():
                errors.append(f"layers: {rel}:{line}: `{CORE}` uses the I/O crate `{crate}`; keep it plain data")
    imports = [(a, b, f, at) for a in sorted(edges) for b in sorted(edges[a]) for f, at in sorted(edges[a][b].items())]

    cycles = [c for c in components(modules, edges) if len(c) > 1]
    for comp in cycles:
        # A big component lists many edges; the pairs importing each other are where to start.
        pairs = [f"{a}<->{b}" for a in comp for b in comp if a < b and b in edges.get(a, {}) and a in edges.get(b, {})]
        errors.append(f"layers: cycle [{' '.join(comp)}]: modules importing each other: {', '.join(pairs) or 'none'}")
        errors += [f"layers: cycle [{' '.join(comp)}]: {f}:{line} `{a}` imports `{b}` ({written})"
                   for a, b, f, (line, written) in imports if a in comp and b in comp]
    for a, b, f, (line, written) in imports:
        if a == CORE:
            errors.append(f"layers: {f}:{line}: `{CORE}` imports `{b}` ({written}); it must import nothing of the crate")
        if b == EDGE:
            errors.append(f"layers: {f}:{line}: `{a}` imports `{EDGE}` ({written}); only the binary may")
    upward = [(a, b, f, at) for a, b, f, at in imports if a in rank and b in rank and rank[a] > rank[b]]
    if len(upward) > MAX_UPWARD:
        errors += [f"layers: upward: {f}:{line} `{a}` (layer {rank[a] + 1}) imports `{b}` (layer {rank[b] + 1}) ({written})"
                   for a, b, f, (line, written) in upward]
        errors.append(f"layers: {len(upward)} imports run upward, at most {MAX_UPWARD}; move them down a layer")

    if verbose:
        for m in sorted(modules, key=lambda m: (rank.get(m, len(layers)), m)):
            targets = edges.get(m, {})
            place = f"layer {rank[m] + 1}" if m in rank else "not in LAYERS"
            print(f"  {m} ({place}) -> " + (", ".join(f"{b}({len(targets[b])})" for b in sorted(targets)) or "-"))
        for a, b, f, (line, written) in upward if len(upward) <= MAX_UPWARD else []:  # else: errors list them
            print(f"  upward: {f}:{line} {a} -> {b}")
    sys.stdout.flush()
    for error in errors:
        print(error, file=sys.stderr)
    print(f"layers: {len(modules)} modules, {len(imports)} imports between modules, {len(cycles)} cycles, "
          f"{len(upward)} running upward (at most {MAX_UPWARD})")
    return 1 if errors else 0


def self_test():
    sample = """
use crate::{a::b, c::{d, e},
    f as g};
// use crate::commented::X;
/// See crate::doc::thing.
fn run() { crate::x::y(); let s = "crate::quoted::z"; let c = '"'; tokio::spawn(go()); crate::redis::k(); }
#[cfg(test)]
mod tests { use crate::tested::T; }
"""
    got = sorted({t for t, _, _ in references(sample)})
    assert got == ["a", "c", "f", "redis", "x"], got
    assert [c for c, _ in io_crates(sample)] == ["tokio"], io_crates(sample)
    assert references("use crate::{\n    self,\n    m::{n},\n};")[1][:2] == ("m", 3)
    print("check-layers: self-test ok")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--self-test"]:
        sys.exit(self_test())
    if args not in ([], ["--verbose"]):
        sys.exit(__doc__)
    override = os.environ.get("CHECK_LAYERS_LAYERS")
    try:
        layers = json.loads(override) if override else LAYERS
    except json.JSONDecodeError as e:
        sys.exit(f"layers: CHECK_LAYERS_LAYERS is not JSON (a list of lists of names): {e}")
    sys.exit(check(Path(__file__).resolve().parent.parent, layers, args == ["--verbose"]))
