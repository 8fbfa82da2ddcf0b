"""Execute notebooks in place, keeping their outputs, so the docs site (`make docs`) shows results.

    python scripts/execute_notebooks.py nbs/bev/40_lifting.ipynb nbs/10_train.ipynb
    make outputs NBS="nbs/bev/40_lifting.ipynb nbs/10_train.ipynb"      # the same; NBS defaults to every notebook

Each notebook runs the way `nbdev_test` runs it: in-process with execnb's `CaptureShell`, the working
directory set to the notebook's folder, `IN_TEST=1`, and the cells `nbdev_test` skips skipped here too
(`#| eval: false`, the `tst_flags` of settings.ini such as `#| slow`, `nbdev_export(` calls); a skipped
cell keeps no output. Figures are saved as PNG. The notebook is then rewritten with its outputs and passed
through `nbdev_clean --fname`, so `make lint`'s clean step leaves it as it is. A notebook that raises is
left untouched (its traceback is printed) and the script exits 1 after trying the rest.
"""

import argparse
import configparser
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _skip_flags():
    "The `tst_flags` of settings.ini (cells `nbdev_test` skips unless asked)."
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "settings.ini")
    return set(cfg.get("DEFAULT", "tst_flags", fallback="").split())


def _skipped(cell, flags):
    "True for a cell `nbdev_test` would not run."
    from fastcore.basics import AttrDict
    from nbdev.process import extract_directives

    if cell.cell_type != "code":
        return True
    if "nbdev_export" + "(" in cell.source:
        return True
    direc = extract_directives(AttrDict(source=cell.source), remove=False)
    if direc.get("eval:", [""])[0].lower() == "false":
        return True
    return bool(flags & direc.keys())


def execute(path, mpl_format="png"):
    """Run the notebook at `path` in place (cwd = its folder) and save it with outputs, then `nbdev_clean` it.

    Returns the seconds it took. Raises `FileNotFoundError` for a missing notebook and re-raises the first
    exception a cell raised (the file is then not written)."""
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell

    path = Path(path).resolve()
    if not path.is_file() or path.suffix != ".ipynb":
        raise FileNotFoundError(f"execute_notebooks: {path} is not a notebook (.ipynb) file")
    flags = _skip_flags()
    nb = read_nb(path)
    os.environ["IN_TEST"] = "1"
    start = time.time()
    shell = CaptureShell(path, mpl_format=mpl_format)
    old = Path.cwd()
    os.chdir(path.parent)
    for cell in nb.cells:
        if cell.cell_type == "code" and _skipped(cell, flags):
            cell.outputs, cell.execution_count = [], None
    try:
        shell.run_all(nb, exc_stop=True, preproc=lambda c: _skipped(c, flags))
    except Exception:
        if shell.exc is not None:
            sys.stderr.write(shell.prettytb(fname=path) + "\n")
        raise
    finally:
        os.chdir(old)
    write_nb(nb, path)
    subprocess.run([str(Path(sys.executable).parent / "nbdev_clean"), "--fname", str(path)], check=True, cwd=ROOT)
    return time.time() - start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="+", help="notebook files to execute in place")
    ap.add_argument("--mpl-format", default="png", help="matplotlib inline format (png, retina, svg); default png")
    ap.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # one notebook, this process
    args = ap.parse_args(argv)
    if args.in_process:
        secs = execute(args.notebooks[0], args.mpl_format)
        print(f"executed {args.notebooks[0]} in {secs:.1f} s")
        return 0
    failed = []
    for nb in args.notebooks:
        # one fresh process per notebook, as nbdev_test: no state (IPython shell, imports, seeds) leaks between them
        res = subprocess.run([sys.executable, __file__, "--in-process", "--mpl-format", args.mpl_format, nb])
        if res.returncode:
            failed.append(nb)
            print(f"FAILED {nb} (traceback above); left as it was", file=sys.stderr)
            continue
        size = Path(nb).stat().st_size / 1e6
        warn = "  (over 1 MB: check the figures' size)" if size > 1 else ""
        print(f"  {nb}: {size:.2f} MB{warn}")
    if failed:
        print(f"{len(failed)} notebook(s) failed: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
