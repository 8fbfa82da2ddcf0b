"Layout that shows the architecture: no forbidden import edge, and every module docstring (a chapter's one-line summary) whole."
import ast, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_no_forbidden_import_edges():
    r = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'import_graph.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    edges = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'import_graph.py')], capture_output=True, text=True).stdout
    assert 'drivenb.bev.evaluate -> drivenb.train' not in edges and 'drivenb.bev.task -> drivenb.train' in edges

def test_module_docstrings_are_whole_sentences():
    for f in sorted((ROOT / 'drivenb').rglob('*.py')):
        if f.name in ('__init__.py', '_modidx.py'): continue
        doc = ast.get_docstring(ast.parse(f.read_text()))
        assert doc and doc.rstrip().endswith(('.', ')')), f"{f.relative_to(ROOT)}: module docstring cut or missing: {doc!r}"
