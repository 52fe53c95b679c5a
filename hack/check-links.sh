#!/usr/bin/env bash
# Checks every relative link in every tracked Markdown file (git ls-files '*.md'):
#   - the target is a tracked file or a directory holding tracked files, inside the repository
#     (a link that leaves the repository root is an error, even if the file exists);
#   - a #anchor names a heading of the target .md file (GitHub's slug rules) or an explicit
#     <a name/id> anchor; a bare #anchor names one of the same file;
#   - no tracked file (of any kind) references the old design notes outside the repository ("shared" + "/DESIGN";
#     spelled apart here so that a plain grep for it finds nothing): docs/design.md replaces them.
# Links with a scheme (https:, mailto:, ...) are not followed: no network. Links inside code
# blocks and code spans are not links.
#
#   hack/check-links.sh               # check the repository; exit 1 listing every bad link
#   hack/check-links.sh --self-test   # prove the checker reports a broken link, a link leaving
#                                     # the repository, a bad anchor and a reference to those notes
#
# Needs bash, git and python3.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

check() { # check REPO_ROOT: prints "file:line: message" per bad link, exits 1 if any
  python3 - "$1" <<'PY'
import os, re, subprocess, sys, urllib.parse

root = os.path.realpath(sys.argv[1])
NEEDLE = "shared/" + "DESIGN"
files = subprocess.run(["git", "-C", root, "ls-files", "-z", "--", "*.md"],
                       check=True, capture_output=True).stdout.decode().split("\0")
files = [f for f in files if f]
tracked = set(subprocess.run(["git", "-C", root, "ls-files", "-z"],
                             check=True, capture_output=True).stdout.decode().split("\0")) - {""}
tracked_dirs = set()
for f in tracked:
    d = os.path.dirname(f)
    while d:
        tracked_dirs.add(d)
        d = os.path.dirname(d)

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML = re.compile(r"<(?:a|img|source)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<[a-z]+\b[^>]*?\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
ATX = re.compile(r"^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")

def lines_outside_code(text):
    """(line number, line) for every line outside fenced code blocks."""
    fence = None
    for n, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        yield n, line

def slug(text):
    """GitHub's heading anchor: the rendered text, lowercased, punctuation dropped,
    spaces to hyphens."""
    t = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)   # links and images: their text
    t = re.sub(r"<[^>]+>", "", t)                          # inline HTML tags
    t = t.replace("`", "")
    t = re.sub(r"(\*\*|__|\*)", "", t)                     # emphasis markers
    t = t.strip().lower()
    t = "".join(c for c in t if c.isalnum() or c in " -_")
    return t.replace(" ", "-")

anchor_cache = {}
def anchors(path):
    if path in anchor_cache:
        return anchor_cache[path]
    with open(os.path.join(root, path), encoding="utf-8") as fh:
        text = fh.read()
    seen, out = {}, set()
    prev = None
    for _, line in lines_outside_code(text):
        heading = None
        m = ATX.match(line)
        if m:
            heading = m.group(2) or ""
        elif prev is not None and prev.strip() and SETEXT.match(line) and not ATX.match(prev):
            heading = prev
        if heading is not None:
            s = slug(heading)
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
        for a in HTML_ANCHOR.findall(line):
            out.add(a)
        prev = line
    anchor_cache[path] = out
    return out

bad = []
# The old design notes must not be referenced from any tracked file, Markdown or not.
for f in sorted(tracked):
    if f.endswith(".md"):
        continue  # checked line by line below
    try:
        with open(os.path.join(root, f), "rb") as fh:
            data = fh.read()
    except OSError:
        continue
    if NEEDLE.encode() in data:
        for n, line in enumerate(data.split(b"\n"), 1):
            if NEEDLE.encode() in line:
                bad.append(f"{f}:{n}: references {NEEDLE} (outside the repository; use docs/design.md)")
for f in files:
    full = os.path.join(root, f)
    if not os.path.isfile(full):
        continue
    with open(full, encoding="utf-8") as fh:
        text = fh.read()
    for n, line in enumerate(text.split("\n"), 1):
        if NEEDLE in line:
            bad.append(f"{f}:{n}: references {NEEDLE} (outside the repository; use docs/design.md)")
    for n, line in lines_outside_code(text):
        stripped = CODE_SPAN.sub("", line)
        targets = [m.group(1) for m in INLINE.finditer(stripped)]
        targets += [m.group(1) for m in REFDEF.finditer(stripped)]
        targets += HTML.findall(stripped)
        for raw in targets:
            target = raw[1:-1] if raw.startswith("<") and raw.endswith(">") else raw
            if SCHEME.match(target):
                if target.lower().startswith("file:"):
                    bad.append(f"{f}:{n}: '{raw}': file: link (outside the repository)")
                continue
            if target.startswith("//"):
                continue  # protocol-relative URL: external
            path_part, _, frag = target.partition("#")
            path_part = urllib.parse.unquote(path_part.split("?", 1)[0])
            if path_part == "":
                dest = f
            else:
                base = root if path_part.startswith("/") else os.path.dirname(full)
                abs_dest = os.path.normpath(os.path.join(base, path_part.lstrip("/")))
                if os.path.commonpath([root, abs_dest]) != root:
                    bad.append(f"{f}:{n}: '{raw}': leaves the repository")
                    continue
                dest = os.path.relpath(abs_dest, root)
                if dest == ".":
                    dest = ""
                if dest and dest not in tracked and dest not in tracked_dirs:
                    why = "not tracked by git" if os.path.exists(abs_dest) else "no such file"
                    bad.append(f"{f}:{n}: '{raw}': {why} ({dest})")
                    continue
            if frag and dest.lower().endswith(".md") and dest in tracked:
                want = urllib.parse.unquote(frag)
                if want not in anchors(dest) and want.lower() not in anchors(dest):
                    bad.append(f"{f}:{n}: '{raw}': no heading for #{want} in {dest}")

for b in bad:
    print(b)
print(f"check-links: {len(files)} Markdown files, {len(bad)} bad link(s)", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

self_test() {
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tmp/repo/docs"
  echo "outside" >"$tmp/outside.md"
  cat >"$tmp/repo/README.md" <<'EOF'
# Title

## A `code` heading, with punctuation!

[good file](docs/guide.md) [good anchor](docs/guide.md#second-part) [own anchor](#title)
[good dir](docs/) [good code anchor](#a-code-heading-with-punctuation)
[broken](docs/missing.md)
[leaves the repository](../outside.md)
[bad anchor](docs/guide.md#no-such-heading)
See ../SHARED_DESIGN_PLACEHOLDER.md for the design.
`[not a link](nowhere.md)`

```
[not a link either](nowhere.md)
```
EOF
  printf '// see ../%s.md\n' "shared/""DESIGN" >"$tmp/repo/docs/code.rs"
  cat >"$tmp/repo/docs/guide.md" <<'EOF'
# Guide

## Second part

[back](../README.md#title) [https is external](https://example.com/x.md)
EOF
  local needle="shared/""DESIGN"
  sed -i "s|SHARED_DESIGN_PLACEHOLDER|${needle}|" "$tmp/repo/README.md"
  git -C "$tmp/repo" init -q
  git -C "$tmp/repo" add -A
  local out rc=0
  out=$(check "$tmp/repo" 2>/dev/null) || rc=$?
  local failed=0
  expect() {
    if grep -qF -- "$1" <<<"$out"; then
      echo "self-test: reported: $1"
    else
      echo "self-test FAILED: not reported: $1" >&2
      failed=1
    fi
  }
  refuse() {
    if grep -qF -- "$1" <<<"$out"; then
      echo "self-test FAILED: wrongly reported: $1" >&2
      failed=1
    fi
  }
  expect "README.md:7: 'docs/missing.md': no such file"
  expect "README.md:8: '../outside.md': leaves the repository"
  expect "README.md:9: 'docs/guide.md#no-such-heading': no heading for #no-such-heading"
  expect "README.md:10: references ${needle}"
  expect "docs/code.rs:1: references ${needle}"
  refuse "nowhere.md"
  refuse "docs/guide.md#second-part"
  refuse "#a-code-heading-with-punctuation"
  refuse "README.md#title"
  refuse "example.com"
  [[ $(wc -l <<<"$out") -eq 5 ]] || { echo "self-test FAILED: expected 5 reports, got:" >&2; echo "$out" >&2; failed=1; }
  [[ $rc -ne 0 ]] || { echo "self-test FAILED: exit status 0 despite bad links" >&2; failed=1; }
  ((failed == 0)) || return 1
  echo "self-test OK"
}

case "${1:-}" in
  --self-test) self_test ;;
  "") check "$ROOT_DIR" ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac
