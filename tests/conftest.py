"Shared fixtures: a tiny synthetic nuScenes-format dataset and its converted frames, made once per test session."
import subprocess, sys
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

from drivenb.testing import TINY_GRID, tiny_raw     # the library's tiny fixtures (nbs/20_testing.ipynb)

def tiny_params(tmp: Path, dataroot: Path, **over) -> dict:
    "A params dict small enough to train a few steps in seconds on CPU."
    p = {
        'data': {'dataroot': str(dataroot), 'version': 'v1.0-synth', 'val_scenes': 'auto', 'frames': str(tmp / 'frames')},
        'grid': dict(TINY_GRID),
        'convert': {'image_size': [48, 80], 'radar_sweeps': 2, 'raster': 'simplebev', 'workers': 0},
        'model': {'encoder': 'resnet18', 'latent_dim': 16, 'use_radar': True, 'rand_flip': False},
        'train': {'seed': 0, 'iters': 3, 'batch_size': 2, 'grad_acc': 1, 'lr': 1e-3, 'val_every': 3, 'log_every': 1,
                  'workers': 0, 'out': str(tmp / 'run'), 'device': 'cpu'},
        'evaluate': {'checkpoint': str(tmp / 'run' / 'best.pt'), 'figures': 1, 'out': str(tmp / 'eval'), 'batch_size': 2},
    }
    for k, v in over.items(): p[k].update(v)
    return p

def write_params(path: Path, p: dict) -> Path:
    path.write_text(yaml.safe_dump(p)); return path

def run_cli(*args, cwd=None, check=True, timeout=600):
    "Run a console script of the venv; returns the CompletedProcess (stdout+stderr in .stdout)."
    exe = BIN / args[0]
    r = subprocess.run([str(exe), *map(str, args[1:])], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and r.returncode != 0: raise AssertionError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-4000:]}")
    return r

@pytest.fixture(scope='session')
def synth_root(tmp_path_factory) -> Path:
    "2 scenes x 4 keyframes of small synthetic nuScenes-format data."
    return tiny_raw(tmp_path_factory.mktemp('synth') / 'nuscenes-synth')

@pytest.fixture(scope='session')
def frames(tmp_path_factory, synth_root) -> Path:
    "The tiny dataset converted with `tiny_params`."
    from drivenb.bev.convert import convert
    tmp = tmp_path_factory.mktemp('conv')
    p = tiny_params(tmp, synth_root)
    convert(synth_root, 'v1.0-synth', p['data']['frames'], image_size=p['convert']['image_size'], grid=p['grid'],
            radar_sweeps=2, workers=0, progress=False)
    return Path(p['data']['frames'])

def fixture_dir():
    "The real nuScenes fixture folder or None."
    from drivenb.nusc import fixture_dir as fd
    return fd()
