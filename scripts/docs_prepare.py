"""The docs site's pre-build step: the notebooks of `nbs/` and the pages of `docs/`, as the site shows them.

`make docs` runs `mkdocs build`; mkdocs.yml names this file as a hook, so on every build (and every
`mkdocs serve` reload) `on_config` rebuilds the folder mkdocs reads (`_docs_src/`, git-ignored) from:

- `nbs/index.ipynb` -> `index.ipynb` (the home page; its links are relative to the repository root,
  as README.md's are), every other `nbs/**/*.ipynb` -> `nbs/**/*.ipynb`, `docs/**` -> `docs/**`, so a
  relative link means the same in the repository and on the site;
- each notebook cleaned of what nbdev keeps out of its docs: cells with `#| hide` or `#| include: false`
  are dropped, `#| echo: false` drops a cell's code and keeps its outputs, `#| output: false` the
  reverse, and the leading `#|` directive lines (`#| export`, `#| exports`, `#| default_exp ...`,
  `#| eval: false`, ...) are removed from the code shown; a cell left empty is dropped. Saved outputs
  (figures included) are kept as they are: nothing is executed (`make outputs` does that);
- links in notebook markdown to `.md` / `.ipynb` files are pointed at the built `.html` pages
  (mkdocs rewrites the links of markdown pages itself, not those inside notebooks).

`on_config` also adds to the navigation any notebook that mkdocs.yml does not name (a new chapter
shows up in its section, sorted by file name, with a note in the build log) and drops nav entries
whose file is missing (with a warning).

    python scripts/docs_prepare.py [OUT]     # the same folder without mkdocs (default _docs_src)
"""

import copy
import json
import logging
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
DOCS = ROOT / "docs"
OUT = ROOT / "_docs_src"

log = logging.getLogger("mkdocs.hooks.docs_prepare")

_DIRECTIVE = re.compile(r"^\s*#\s*\|")
_LINK = re.compile(r"(\]\()(?!https?:|mailto:|#|/)([^)\s#]+?)\.(md|ipynb)((?:#[^)\s]*)?\))")


def _src(cell):
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _directives(lines):
    "Split a code cell's lines into (leading directive lines, the rest), nbdev's rule: directives lead, blanks allowed."
    i = 0
    while i < len(lines) and (not lines[i].strip() or _DIRECTIVE.match(lines[i])):
        i += 1
    return [ln for ln in lines[:i] if ln.strip()], lines[i:]


def _parse(dirs):
    "Directive lines -> {name: value}; `#| hide` -> {'hide': ''}, `#| echo: false` -> {'echo': 'false'}."
    out = {}
    for ln in dirs:
        m = re.match(r"([\w-]+)\s*:?\s*(.*)$", _DIRECTIVE.sub("", ln, count=1).strip())
        if m:
            out[m[1].lower()] = m[2].strip().lower()
    return out


def clean_cell(cell):
    """The cell as the docs show it, or None when it is not shown.

    `cell`: one nbformat v4 cell (a dict); not modified. Code cells lose their leading `#|` directive lines;
    `#| hide` / `#| include: false` hide the cell, `#| echo: false` its code, `#| output: false` its outputs.
    A markdown cell whose first line is `#| hide` is hidden too; its links to .md / .ipynb files point at .html."""
    cell = copy.deepcopy(cell)
    lines = _src(cell).splitlines(True)
    if cell.get("cell_type") == "markdown":
        if lines and _DIRECTIVE.match(lines[0]) and "hide" in _parse(lines[:1]):
            return None
        cell["source"] = _LINK.sub(lambda m: f"{m[1]}{m[2]}.html{m[4]}", "".join(lines))
        return cell
    if cell.get("cell_type") != "code":
        return cell
    dirs, code = _directives(lines)
    d = _parse(dirs)
    if "hide" in d or d.get("include") == "false":
        return None
    if d.get("output") == "false":
        cell["outputs"] = []
    code = "".join(code).strip("\n")
    if d.get("echo") == "false":
        code = ""
        cell.setdefault("metadata", {})["hide_input"] = True
    cell["source"] = code
    if not code and not cell.get("outputs"):
        return None
    return cell


def prepare_notebook(src, dst):
    """Write `dst`: notebook `src` (a .ipynb path) with every cell passed through `clean_cell`.

    Raises `ValueError` naming `src` when it is not valid notebook JSON."""
    src, dst = Path(src), Path(dst)
    try:
        nb = json.loads(src.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"docs_prepare: {src} is not a notebook (invalid JSON: {e})") from None
    nb["cells"] = [c for c in (clean_cell(c) for c in nb.get("cells", [])) if c is not None]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return dst


def notebooks():
    "Every source notebook under nbs/ (checkpoints excluded), sorted."
    return sorted(p for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def site_path(nb):
    "Where notebook `nb` lands in the docs folder, relative to it: index.ipynb at the top, the rest under nbs/."
    rel = Path(nb).resolve().relative_to(NBS)
    return Path("index.ipynb") if rel == Path("index.ipynb") else Path("nbs") / rel


def prepare(out=OUT):
    """Rebuild folder `out` (it must be named `_docs_src`: it is deleted first) from nbs/ and docs/.

    Returns the list of written paths relative to `out`."""
    out = Path(out)
    if out.name != "_docs_src":
        raise ValueError(f"docs_prepare: refusing to rebuild {out}: the docs build folder must be named _docs_src")
    if out.exists():
        shutil.rmtree(out)
    written = []
    for nb in notebooks():
        prepare_notebook(nb, out / site_path(nb))
        written.append(site_path(nb))
    for f in sorted(DOCS.rglob("*")):
        if f.is_file() and f.suffix != ".py" and "__pycache__" not in f.parts:
            dst = out / "docs" / f.relative_to(DOCS)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst)
            written.append(dst.relative_to(out))
    return written


# --- navigation ---------------------------------------------------------------------------------------------
def _nav_files(nav):
    "Every file a mkdocs nav (list of str / {title: str | list}) names, in order."
    for item in nav or []:
        val = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(val, list):
            yield from _nav_files(val)
        elif isinstance(val, str) and not re.match(r"https?:", val):
            yield val


def _section_for(rel):
    "The nav section title a notebook at docs path `rel` (a str) belongs in when mkdocs.yml does not name it."
    if rel.startswith("nbs/bev/explore/"):
        return "The explorers"
    if rel.startswith("nbs/bev/ablations/"):
        return "The pipeline"
    if rel.startswith("nbs/bev/"):
        return "The method"
    if rel.startswith("nbs/synth/"):
        return "Tools"
    return "The engine"


def _title(path):
    "A notebook's title: its first markdown heading, else its file name."
    try:
        for c in json.loads(Path(path).read_text(encoding="utf-8"))["cells"]:
            if c["cell_type"] == "markdown":
                m = re.search(r"^#\s+(.+)$", _src(c), re.M)
                if m:
                    return m[1].strip()
    except (OSError, ValueError, KeyError):
        pass
    return Path(path).stem


def complete_nav(nav, docs_dir):
    """Drop nav entries whose file is not in `docs_dir`; add the notebooks there that `nav` does not name.

    Returns (new nav, dropped paths, added paths). A notebook is added to its section (by folder, see
    `_section_for`) in file-name order, titled by its first heading."""
    docs_dir = Path(docs_dir)
    dropped, added = [], []

    def prune(items):
        out = []
        for item in items:
            val = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(val, list):
                out.append({next(iter(item)): prune(val)})
            elif isinstance(val, str) and not re.match(r"https?:", val) and not (docs_dir / val).is_file():
                dropped.append(val)
            else:
                out.append(item)
        return out

    nav = prune(copy.deepcopy(nav or []))
    named = set(_nav_files(nav))
    for nb in sorted(docs_dir.rglob("*.ipynb")):
        rel = nb.relative_to(docs_dir).as_posix()
        if rel in named:
            continue
        title = _section_for(rel)
        section = next((i for i in nav if isinstance(i, dict) and next(iter(i)) == title), None)
        if section is None:
            section = {title: []}
            nav.append(section)
        items = section[title]
        pos = next((k for k, it in enumerate(items)
                    if isinstance(it, dict) and isinstance(next(iter(it.values())), str)
                    and Path(next(iter(it.values()))).parent == Path(rel).parent
                    and next(iter(it.values())) > rel), None)
        if pos is None:  # after the last entry of the same folder, else at the end
            same = [k for k, it in enumerate(items) if isinstance(it, dict)
                    and Path(str(next(iter(it.values())))).parent == Path(rel).parent]
            pos = same[-1] + 1 if same else len(items)
        items.insert(pos, {_title(nb): rel})
        added.append(rel)
    return nav, dropped, added


def on_config(config):
    "mkdocs hook: rebuild docs_dir from nbs/ and docs/, then complete the nav."
    prepare(config["docs_dir"])
    nav, dropped, added = complete_nav(config["nav"], config["docs_dir"])
    for p in dropped:
        log.warning("nav names %s, which is not in nbs/ or docs/: left out", p)
    for p in added:
        log.info("nav did not name %s: added (name it in mkdocs.yml to place it)", p)
    config["nav"] = nav
    return config


_EXTERNAL = re.compile(r'<script[^>]*\ssrc="(?:(?:https?:)?//[^"]*)?"[^>]*>\s*</script>\s*', re.I)


def on_post_page(output, page, config):
    """mkdocs hook: drop `<script src="http...">` (and empty `src=""`) tags from a built page.

    nbconvert's template loads MathJax from a CDN on every notebook page; the site is built and read offline,
    no chapter has TeX math, and a script that cannot load only delays the page."""
    return _EXTERNAL.sub("", output)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    print(f"{len(prepare(out))} files in {out}")
