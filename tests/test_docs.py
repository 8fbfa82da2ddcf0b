"The docs site's pre-build step (scripts/docs_prepare.py) and mkdocs.yml: hidden cells and #| lines never reach a page, the nav names real files."
import importlib.util, json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip('mkdocs')
pytest.importorskip('mkdocs_jupyter')
yaml = pytest.importorskip('yaml')


def _prep():
    spec = importlib.util.spec_from_file_location('docs_prepare', ROOT / 'scripts' / 'docs_prepare.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def _nb(cells):
    return {'cells': cells, 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}


def _code(src, outputs=()):
    return {'cell_type': 'code', 'id': 'x', 'metadata': {}, 'execution_count': None, 'outputs': list(outputs), 'source': src}


def _sources(path):
    return [''.join(c['source']) if isinstance(c['source'], list) else c['source'] for c in json.loads(Path(path).read_text())['cells']]


@pytest.mark.parametrize('nb', ['nbs/bev/40_lifting.ipynb', 'nbs/10_train.ipynb', 'nbs/00_geometry.ipynb'])
def test_real_notebooks_lose_hidden_cells_and_directives(nb, tmp_path):
    dp = _prep()
    src = ROOT / nb
    raw = _sources(src)
    assert any(re.match(r'\s*#\s*\|\s*hide', s) for s in raw) and any(re.match(r'\s*#\s*\|\s*export', s) for s in raw)
    out = dp.prepare_notebook(src, tmp_path / 'out.ipynb')
    shown = _sources(out)
    assert not any(re.search(r'^\s*#\s*\|', s, re.M) for s in shown), 'a #| line reached the page'
    assert not any('from fastcore.test import' in s for s in shown)     # the hidden import cell is gone
    # every exported line of code is still shown, without its directive
    exported = [s.split('\n', 1)[1].strip('\n') for s in raw if re.match(r'#\|\s*exports?\s*\n', s)]
    assert exported and all(e in shown for e in exported)
    # outputs are kept as saved
    n_out = lambda p: sum(len(c.get('outputs', [])) for c in json.loads(Path(p).read_text())['cells'])
    assert n_out(out) == n_out(src)


def test_directive_rules(tmp_path):
    dp = _prep()
    img = {'output_type': 'display_data', 'data': {'image/png': 'iVBO'}, 'metadata': {}}
    nb = _nb([
        _code('#| default_exp bev.x'),                              # only a directive: dropped
        _code('#| export\ndef f(): return 1'),                      # directive stripped, code kept
        _code('#|exports\n\nX = 2'),
        _code('#| hide\nimport secret'),                            # hidden
        _code('#| include: false\nimport also_secret'),
        _code('#| echo: false\nplot()', [img]),                     # outputs only
        _code('#| output: false\nnoisy()', [img]),                  # code only
        _code('#| eval: false\n# not run\nslow()'),
        {'cell_type': 'markdown', 'id': 'm', 'metadata': {}, 'source': 'See [conventions](../../docs/conventions.md#lifting), [a](x.ipynb) and [web](https://x.org/a.md).'},
    ])
    p = tmp_path / 'in.ipynb'; p.write_text(json.dumps(nb))
    cells = json.loads(dp.prepare_notebook(p, tmp_path / 'o.ipynb').read_text())['cells']
    srcs = [c['source'] for c in cells]
    assert srcs[:5] == ['def f(): return 1', 'X = 2', '', 'noisy()', '# not run\nslow()']
    assert cells[2]['outputs'] == [img] and cells[3]['outputs'] == []
    assert srcs[5] == 'See [conventions](../../docs/conventions.html#lifting), [a](x.html) and [web](https://x.org/a.md).'
    assert not any('secret' in s for s in srcs)


def test_bad_notebook_is_named(tmp_path):
    p = tmp_path / 'broken.ipynb'; p.write_text('{not json')
    with pytest.raises(ValueError, match='broken.ipynb'):
        _prep().prepare_notebook(p, tmp_path / 'o.ipynb')


def _nav():
    cfg = yaml.load((ROOT / 'mkdocs.yml').read_text(), Loader=yaml.SafeLoader)   # no !! tags in mkdocs.yml
    return cfg['nav']


def _source_of(rel):
    "The repository file a docs path comes from."
    return ROOT / 'nbs' / 'index.ipynb' if rel == 'index.ipynb' else ROOT / rel


def test_nav_names_only_files_that_exist():
    dp = _prep()
    named = list(dp._nav_files(_nav()))
    assert 'index.ipynb' in named and 'docs/conventions.md' in named
    optional = {'nbs/bev/52_encoders.ipynb'}   # being written; the hook drops it while it is absent
    missing = [p for p in named if not _source_of(p).is_file() and p not in optional]
    assert not missing, f'mkdocs.yml nav names files that do not exist: {missing}'


def test_every_notebook_and_page_reaches_the_nav(tmp_path):
    dp = _prep()
    out = tmp_path / '_docs_src'
    written = {p.as_posix() for p in dp.prepare(out)}
    nav, dropped, added = dp.complete_nav(_nav(), out)
    assert set(dropped) <= {'nbs/bev/52_encoders.ipynb'}
    pages = {p for p in written if p.endswith(('.ipynb', '.md'))}
    assert pages <= set(dp._nav_files(nav)), pages - set(dp._nav_files(nav))
    for a in added:   # a notebook mkdocs.yml forgot lands in its section by folder
        assert any(a in dp._nav_files(v) for s in nav if isinstance(s, dict) for v in s.values() if isinstance(v, list))
