"`drivenb-import-simplebev`: an official-layout Simple-BEV checkpoint becomes a drivenb checkpoint `load_model` reads; bad files exit 2 in one line."
import torch
from conftest import run_cli
from drivenb.geometry import VoxelGrid
from drivenb.io import load_checkpoint
from drivenb.bev.model import Segnet
from drivenb.bev.evaluate import load_model
from drivenb.bev.simplebev import drivenb_to_official

SMALL = ['grid.bounds_x=[-8,8]', 'grid.bounds_y=[-8,8]', 'grid.shape=[16,2,16]']

def official_file(path, use_radar=False, drop=None):
    "A random ResNet-101 Segnet on a 16x2x16 ego grid saved as Simple-BEV's saverloader does; returns the drivenb model."
    torch.manual_seed(0)
    ours = Segnet(VoxelGrid(((-8, 8), (-8, 8), (-4.5, 5.5)), (16, 2, 16)), encoder='resnet101', use_radar=use_radar).eval()
    sd = drivenb_to_official(ours.state_dict(), reverse_vertical=2)
    if drop: del sd[drop]
    opt = torch.optim.AdamW(ours.parameters(), lr=3e-4, weight_decay=1e-7)
    torch.save({'optimizer_state_dict': opt.state_dict(), 'model_state_dict': sd}, path)
    return ours

def test_import_writes_a_checkpoint_evaluate_reads(tmp_path):
    src = tmp_path / 'model-000025000.pth'
    ours = official_file(src, use_radar=True)
    out = tmp_path / 'runs' / 'simplebev' / 'best.pt'
    r = run_cli('drivenb-import-simplebev', src, '--out', out, '--set', *SMALL)
    assert r.returncode == 0 and 'camera+radar' in r.stdout and 'step 25000' in r.stdout, r.stdout
    model, ck = load_model(out, VoxelGrid.from_params(load_checkpoint(out)['params']['grid']))
    assert ck['params']['model']['encoder'] == 'resnet101' and ck['params']['model']['use_radar']
    assert ck['params']['model']['latent_dim'] == 128 and ck['params']['model']['neck_channels'] == 512 and ck['step'] == 25000
    for k, v in ours.state_dict().items(): assert torch.equal(model.state_dict()[k], v), k

def test_import_refuses_a_missing_key(tmp_path):
    src = tmp_path / 'model-000001000.pth'
    official_file(src, drop='decoder.segmentation_head.3.bias')
    r = run_cli('drivenb-import-simplebev', src, '--out', tmp_path / 'best.pt', '--set', *SMALL, check=False)
    assert r.returncode == 2, r.stdout
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and 'missing 1: decoder.segmentation_head.3.bias' in lines[0], r.stdout
    assert not (tmp_path / 'best.pt').exists()

def test_import_refuses_a_missing_file(tmp_path):
    r = run_cli('drivenb-import-simplebev', tmp_path / 'nope.pth', '--out', tmp_path / 'best.pt', check=False)
    assert r.returncode == 2 and 'nope.pth' in r.stdout and len(r.stdout.strip().splitlines()) == 1, r.stdout
