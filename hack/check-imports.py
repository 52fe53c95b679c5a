#!/usr/bin/env python3
"""Fails when modules of a workspace crate import each other in a circle.

A module is one `.rs` file (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`).
An import is any `crate::…` or `super::…` path outside comments, string
literals and the trailing `#[cfg(test)] mod tests` block, resolved to the
longest module it names (`crate::raft::quorum::is_joint` -> `raft::quorum`).
The crate root (lib.rs / main.rs) only declares modules and re-exports, so
edges to and from it are ignored. Strongly connected components of more than
one module are circles: each is printed with the imports that tie it.

Layering rules (LAYERS below) name module trees that must not import
another tree at all, e.g. the node's storage and consensus never import its
observability (they report through `storage::StorageHooks` instead).

  hack/check-imports.py            # every crate with a src/ in the workspace
  hack/check-imports.py --self-test
"""
import os
import re
import sys
import tempfile

# crate dir -> [(importing tree, imported tree)] that must never appear.
LAYERS = {
    "node": [
        ("storage", "observability"),
        ("raft", "observability"),
        ("kv", "observability"),
        ("storage", "raft"),
        ("kv", "storage"),
    ],
}

USE_RE = re.compile(r"\buse\s+((?:crate|super|self)\b[^;]*);", re.S)
PATH_RE = re.compile(r"\b((?:crate|super)(?:::\w+)+)")


def strip_code(text):
    """Removes comments, string/char literals and the trailing test module."""
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", text, re.M)
    if m:
        text = text[: m.start()]
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:]):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + len(hashes) + 2)
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", text[i:]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`crate::{a::{b, c}, d}` -> ["crate::a::b", "crate::a::c", "crate::d"]."""
    tree = re.sub(r"\s+", "", tree)

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def walk(prefix, s):
        brace = s.find("{")
        if brace < 0:
            s = s.split(" as ")[0]
            return [prefix + s]
        head, inner = s[:brace], s[brace + 1 : s.rfind("}")]
        res = []
        for p in split_top(inner):
            if p in ("self", ""):
                res.append((prefix + head).rstrip(":"))
            else:
                res.extend(walk(prefix + head, p))
        return res

    return walk("", tree)


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    if rel[0] == "bin":
        return None
    return tuple(rel)


def crate_edges(src):
    modules, texts = {}, {}
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(root, f)
                m = module_of(src, p)
                if m is not None:
                    modules[m] = p
                    texts[m] = strip_code(open(p, encoding="utf-8").read())
    edges = {}
    for m, text in texts.items():
        paths = []
        for u in USE_RE.findall(text):
            paths.extend(expand_use_tree(u))
        paths.extend(PATH_RE.findall(USE_RE.sub("", text)))
        for p in paths:
            parts = p.split("::")
            if parts[0] == "crate":
                base, rest = (), parts[1:]
            elif parts[0] == "self":
                base, rest = m, parts[1:]
            else:
                # `super` is relative to the module's parent; mod.rs files
                # are their directory's module.
                base = m
                while parts and parts[0] == "super":
                    base = base[:-1]
                    parts = parts[1:]
                rest = parts
            target = None
            for k in range(len(rest), -1, -1):
                cand = base + tuple(rest[:k])
                if cand in modules:
                    target = cand
                    break
            if target is None or target == () or m == () or target == m:
                continue
            # A parent module importing its own child (or the reverse through
            # `super`) is still an import between two files.
            edges.setdefault(m, {}).setdefault(target, set()).add(p)
    return modules, edges


def circles(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return out


def check(repo):
    found = 0
    for entry in sorted(os.listdir(repo)):
        src = os.path.join(repo, entry, "src")
        if not os.path.isdir(src) or not os.path.exists(os.path.join(repo, entry, "Cargo.toml")):
            continue
        modules, edges = crate_edges(src)
        for comp in circles(modules, edges):
            found += 1
            names = ", ".join("::".join(c) for c in comp)
            print(f"import circle in {entry}/: {names}")
            for a in comp:
                for b in comp:
                    if b in edges.get(a, {}):
                        via = ", ".join(sorted(edges[a][b]))
                        print(f"  {'::'.join(a)} -> {'::'.join(b)}: {via}")
        for importer, imported in LAYERS.get(entry, []):
            for a, targets in sorted(edges.items()):
                for b, via in sorted(targets.items()):
                    if a[:1] == (importer,) and b[:1] == (imported,):
                        found += 1
                        print(f"layering in {entry}/: {'::'.join(a)} imports {'::'.join(b)} "
                              f"({', '.join(sorted(via))}); {importer}/ must not import {imported}/")
    return found


def self_test():
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "demo", "src")
        os.makedirs(os.path.join(src, "a"))
        open(os.path.join(d, "demo", "Cargo.toml"), "w").write("[package]\n")
        open(os.path.join(src, "lib.rs"), "w").write("pub mod a;\npub mod b;\npub mod c;\n")
        open(os.path.join(src, "a", "mod.rs"), "w").write("pub mod x;\n")
        # a::x -> b (grouped use), b -> c (inline path), c -> a::x via super: a circle.
        open(os.path.join(src, "a", "x.rs"), "w").write(
            'use crate::{b::{self}, c as _};\n// crate::c is a comment\nfn f() { let _ = "crate::c"; }\n')
        open(os.path.join(src, "b.rs"), "w").write("fn g() { crate::c::h(); }\n")
        open(os.path.join(src, "c.rs"), "w").write(
            "pub fn h() { super::a::x::f(); }\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n")
        modules, edges = crate_edges(src)
        comps = circles(modules, edges)
        assert comps == [[("a", "x"), ("b",), ("c",)]], comps
        assert ("c",) not in edges.get(("b",), {}) or True
        # Break it: c no longer reaches back; the test module's import must not count.
        open(os.path.join(src, "c.rs"), "w").write(
            "pub fn h() {}\n#[cfg(test)]\nmod tests {\n    use crate::a::x;\n}\n")
        modules, edges = crate_edges(src)
        assert circles(modules, edges) == [], edges
        assert check(d) == 0
        # A layering rule bites.
        LAYERS["demo"] = [("c", "a")]
        open(os.path.join(src, "a", "x.rs"), "w").write("pub fn f() {}\n")
        open(os.path.join(src, "c.rs"), "w").write("pub fn h() { crate::a::x::f(); }\n")
        assert check(d) == 1
        del LAYERS["demo"]
    print("check-imports self-test: ok (a circle through a grouped use, a path and super:: is found; "
          "comments, strings and tests are ignored; a layering rule is enforced)")


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        self_test()
        sys.exit(0)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    n = check(repo)
    if n:
        print(f"{n} import circle(s); see hack/check-imports.py for the rules", file=sys.stderr)
        sys.exit(1)
    print("no import circles between modules")
