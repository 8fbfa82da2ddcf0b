#!/usr/bin/env python3
"""Print the import edges between drivenb's modules (`a -> b`, one per line, module-level and lazy imports alike).

    python scripts/import_graph.py            # every edge
    python scripts/import_graph.py --check    # exit 1 if a forbidden edge exists (see RULES)

Rules: the ground floor (drivenb.<module>) never imports a study or a tool subpackage (drivenb.bev, drivenb.synth, ...),
except `drivenb.testing` (the fixtures that build every study's tiny data) and the trainer's registry, which imports
`drivenb.<task>.task` by name at run time; nothing but tests imports `drivenb.testing`; a study never imports another
study; evaluation never imports the training loop."""
import ast, sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / 'drivenb'

def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)

def edges():
    out = set()
    for f in sorted(PKG.rglob('*.py')):
        if f.name == '_modidx.py': continue
        src = module_name(f); pkg = src.rsplit('.', 1)[0] if f.name != '__init__.py' else src
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:   # relative import
                    base = pkg.split('.')[:len(pkg.split('.')) - node.level + 1]
                    name = '.'.join(base + ([node.module] if node.module else []))
                else: name = node.module or ''
                names = [name] + [f'{name}.{a.name}' for a in node.names]
            elif isinstance(node, ast.Import): names = [a.name for a in node.names]
            else: continue
            mods = {module_name(p) for p in PKG.rglob('*.py')}
            for n in names:
                if n.startswith('drivenb') and n in mods and n != src and n != 'drivenb': out.add((src, n))
    return sorted(out)

def room(m: str) -> str:
    "'ground' for drivenb.<module>, else the subpackage name."
    parts = m.split('.')
    return 'ground' if len(parts) == 2 else parts[1]

def violations(es):
    bad = []
    for a, b in es:
        ra, rb = room(a), room(b)
        if a == 'drivenb.testing': continue          # the test fixtures build every study's data
        if ra == 'ground' and rb != 'ground': bad.append((a, b, 'the ground floor imports a study or tool'))
        elif ra != 'ground' and rb != 'ground' and ra != rb and rb != 'synth': bad.append((a, b, 'a study imports another study'))
        elif b == 'drivenb.testing': bad.append((a, b, 'library code imports the test fixtures'))
        elif a.endswith('.evaluate') and b == 'drivenb.train': bad.append((a, b, 'evaluation imports the training loop'))
    return bad

if __name__ == '__main__':
    es = edges()
    if '--check' in sys.argv:
        bad = violations(es)
        for a, b, why in bad: print(f'{a} -> {b}: {why}')
        sys.exit(1 if bad else 0)
    for a, b in es: print(f'{a} -> {b}')
