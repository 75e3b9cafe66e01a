"""The model index (model-index.yml and configs/metafiles/*/metafile.yml)
as mim reads it: it parses with the ``modelindex`` library, lists every
config under its file name with the official weights and results where they
exist, and ``mim list`` / ``mim search`` / ``mim download`` work on the
installed package, offline (docs/model_index.md)."""
import ast
import glob
import json
import os
import subprocess
import sys

import pytest
import yaml
from mmengine.config import Config
from modelindex.load_model_index import load

from tests.test_engine.helpers import mim_exe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
INDEX = os.path.join(ROOT, 'model-index.yml')
MIM_INDEX = os.path.join(ROOT, 'mmvrwkv', '.mim', 'model-index.yml')
HF = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/'
PAPER_URL = 'https://arxiv.org/abs/2403.02308'
CODE_URL = 'https://github.com/OpenGVLab/Vision-RWKV'
COLLECTIONS = {'VRWKV', 'VRWKV6', 'VRWKV-MAE', 'VRWKV-Demo'}

# The "Model Zoo" tables of the official README (OpenGVLab/Vision-RWKV
# 0e0e38a), written out again: file name of the weights, then the metrics.
SIZES = dict(t='tiny', s='small', b='base', l='large')
OFFICIAL = {
    'vrwkv_t_in1k': ('vrwkv_t_in1k_224.pth', {'Top 1 Accuracy': 75.1}),
    'vrwkv_s_in1k': ('vrwkv_s_in1k_224.pth', {'Top 1 Accuracy': 80.1}),
    'vrwkv_b_in1k': ('vrwkv_b_in1k_224.pth', {'Top 1 Accuracy': 82.0}),
    'vrwkv_l_in1k_384': ('vrwkv_l_22kto1k_384.pth',
                         {'Top 1 Accuracy': 86.0}),
    'vrwkv6_t_in1k': ('vrwkv6_t_in1k_224.pth', {'Top 1 Accuracy': 76.6}),
    'vrwkv6_s_in1k': ('vrwkv6_s_in1k_224.pth', {'Top 1 Accuracy': 81.1}),
    'vrwkv6_b_in1k': ('vrwkv6_b_in1k_224.pth', {'Top 1 Accuracy': 82.6}),
}
for _s, _box, _mask in zip('tsbl', (41.7, 44.8, 46.8, 50.6),
                           (38.0, 40.2, 41.7, 44.9)):
    OFFICIAL[f'mask_rcnn_vrwkv_{_s}'] = (
        f'mask_rcnn_vrwkv_adapter_{SIZES[_s]}_fpn_1x_coco.pth',
        {'box AP': _box, 'mask AP': _mask})
for _s, _miou in zip('tsbl', (43.3, 47.2, 49.2, 53.5)):
    OFFICIAL[f'upernet_vrwkv_{_s}'] = (
        f'upernet_vrwkv_adapter_{SIZES[_s]}_512_160k_ade20k.pth',
        {'mIoU': _miou})
DATASET = {'Top 1 Accuracy': 'ImageNet-1k', 'box AP': 'COCO',
           'mask AP': 'COCO', 'mIoU': 'ADE20K'}

# mim must not reach the network: a proxy that refuses makes any attempt
# fail at once instead of downloading or hanging
OFFLINE = dict(os.environ, HTTP_PROXY='http://127.0.0.1:9',
               HTTPS_PROXY='http://127.0.0.1:9', NO_PROXY='',
               PAGER='cat')


@pytest.fixture(scope='module')
def index():
    mi = load(INDEX)
    assert mi.check(silent=True) == []
    return mi


def models_by_name(index):
    return {m.name: m for m in index.models}


def metrics(model):
    """{metric: (dataset, value)} of a modelindex Model."""
    out = {}
    for result in model.results or []:
        for key, value in result.metrics.items():
            out[key] = (result.dataset, value)
    return out


def mim(*args, cwd=ROOT):
    exe = mim_exe()
    assert exe, 'openmim is not installed'
    proc = subprocess.run([exe, *args], cwd=cwd, env=OFFLINE,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# ---- the files --------------------------------------------------------------
def test_index_imports_every_metafile(index):
    with open(INDEX) as f:
        imports = yaml.safe_load(f)['Import']
    found = sorted(os.path.relpath(p, ROOT) for p in glob.glob(
        os.path.join(ROOT, 'configs', 'metafiles', '*', 'metafile.yml')))
    assert sorted(imports) == found
    assert {c.name for c in index.collections} == COLLECTIONS
    for collection in index.collections:
        assert collection.paper['URL'] == PAPER_URL
        assert collection.paper['Title'].startswith('Vision-RWKV: ')
        assert collection.code['URL'] == CODE_URL


def test_names_are_unique_config_names(index):
    names = [m.name for m in index.models]
    assert len(names) == len(set(names))
    for model in index.models:
        # mim's config ids: the file name, lower case (mim lowers its input)
        assert model.config.startswith('configs/'), model.config
        assert os.path.isfile(os.path.join(ROOT, model.config)), model.config
        assert model.name == os.path.basename(model.config)[:-3]
        assert model.name == model.name.lower()
        assert model.in_collection in COLLECTIONS


def test_every_config_is_listed(index):
    configs = {os.path.relpath(p, ROOT) for p in glob.glob(
        os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)
        if '_base_' not in p.split(os.sep)}
    listed = {m.config for m in index.models}
    assert configs == listed, (sorted(configs - listed),
                               sorted(listed - configs))


def test_official_weights_and_results(index):
    models = models_by_name(index)
    for name, (weights, results) in OFFICIAL.items():
        model = models[name]
        assert model.weights == HF + weights, name
        assert metrics(model) == {k: (DATASET[k], v)
                                  for k, v in results.items()}, name
        assert model.metadata.data['Parameters'] > 0
        assert 'Training Data' in model.metadata.data
        flops = 'FLOPs' if name.endswith(('in1k', '384')) else \
            'Backbone FLOPs'
        assert model.metadata.data[flops] > 0
    # the others have neither weights nor results
    for name, model in models.items():
        if name not in OFFICIAL:
            assert model.weights is None and not model.results, name


def test_weights_are_those_the_configs_start_from(index):
    """The classifiers' URLs are those the dense configs load their
    backbones from (the same files)."""
    models = models_by_name(index)
    for size in 'tsb':
        cfg = Config.fromfile(os.path.join(ROOT, models[
            f'upernet_vrwkv_{size}'].config))
        assert cfg.model.backbone.init_cfg.checkpoint == models[
            f'vrwkv_{size}_in1k'].weights
        cfg = Config.fromfile(os.path.join(ROOT, models[
            f'mask_rcnn_vrwkv6_{size}'].config))
        assert cfg.model.backbone.init_cfg.checkpoint == models[
            f'vrwkv6_{size}_in1k'].weights


# ---- mim --------------------------------------------------------------------
def test_installed_package_carries_the_index():
    """mim reads mmvrwkv/.mim/model-index.yml, which setup.py links (editable
    install, build_ext --inplace) or copies (wheel, sdist)."""
    assert os.path.isfile(MIM_INDEX), (
        'mmvrwkv/.mim/model-index.yml is missing: run `python setup.py '
        'build_ext --inplace` or `pip install --no-build-isolation -e .`')
    assert os.path.samefile(MIM_INDEX, INDEX) or \
        open(MIM_INDEX).read() == open(INDEX).read()


def test_mim_list_shows_mmvrwkv():
    out = mim('list').stdout
    assert any(line.split()[:1] == ['mmvrwkv'] for line in out.splitlines()), \
        out


def test_mim_search(index, tmp_path):
    out = tmp_path / 'all.json'
    mim('search', 'mmvrwkv', '--json', str(out))
    table = json.loads(out.read_text())  # {field: {config id: value}}
    assert set(table['config']) == {m.name for m in index.models}
    weights = {k: v for k, v in table['weight'].items() if v}
    assert weights == {k: HF + v[0] for k, v in OFFICIAL.items()}
    top1 = table['imagenet-1k/top_1_accuracy']
    assert top1['vrwkv_l_in1k_384'] == 86.0
    assert table['coco/box_ap']['mask_rcnn_vrwkv_t'] == 41.7
    assert table['ade20k/miou']['upernet_vrwkv_l'] == 53.5
    assert table['model']['upernet_vrwkv6_t'] == 'vrwkv6'

    # mim 0.3.9's filter: --condition FIELD<OP>VALUE (no spaces), the field
    # a substring of a column name
    out = tmp_path / 'top1.json'
    mim('search', 'mmvrwkv', '--condition', 'top_1_accuracy>80', '--json',
        str(out))
    found = set(json.loads(out.read_text())['config'])
    assert found == {name for name, (_, r) in OFFICIAL.items()
                     if r.get('Top 1 Accuracy', 0) > 80}
    assert found == {'vrwkv_s_in1k', 'vrwkv_b_in1k', 'vrwkv_l_in1k_384',
                     'vrwkv6_s_in1k', 'vrwkv6_b_in1k'}

    proc = mim('search', 'mmvrwkv', '--model', 'vrwkv6', '--dataset', 'coco',
               '--valid-config')
    ids = ast.literal_eval(proc.stdout.split('valid config ids:')[1].strip())
    assert set(ids) == {
        'mask_rcnn_vrwkv6_t', 'mask_rcnn_vrwkv6_s', 'mask_rcnn_vrwkv6_b'}


def test_mim_download_offline(index, tmp_path):
    """mim skips the download when the checkpoint is in --dest already; it
    dumps the config, which loads and builds the model."""
    from mmvrwkv.apis import build_model
    checkpoint = tmp_path / 'vrwkv_t_in1k_224.pth'
    checkpoint.write_bytes(b'')
    out = mim('download', 'mmvrwkv', '--config', 'vrwkv_t_in1k', '--dest',
              str(tmp_path)).stdout
    assert 'vrwkv_t_in1k_224.pth exists in' in out, out
    assert checkpoint.read_bytes() == b''
    cfg = Config.fromfile(str(tmp_path / 'vrwkv_t_in1k.py'))
    model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    assert params == models_by_name(index)[
        'vrwkv_t_in1k'].metadata.data['Parameters']


@pytest.mark.slow
def test_mim_download_every_official_config(tmp_path):
    """One mim call for the 15 models with weights (files in place): each
    dumped config holds the model of the package's config."""
    for weights, _ in OFFICIAL.values():
        (tmp_path / weights).write_bytes(b'')
    mim('download', 'mmvrwkv', '--config', *OFFICIAL, '--dest',
        str(tmp_path))
    for name in OFFICIAL:
        dumped = Config.fromfile(str(tmp_path / f'{name}.py'))
        source = Config.fromfile(os.path.join(ROOT, 'configs', f'{name}.py'))
        assert dumped.model.to_dict() == source.model.to_dict(), name
        assert dumped.custom_imports.imports == ['mmvrwkv']


@pytest.mark.slow
def test_parameter_counts(index):
    """Parameters and Backbone Parameters are those of the models the
    configs build (on the meta device: shapes only)."""
    from mmvrwkv.apis import build_model
    for model in index.models:
        meta = model.metadata.data
        if 'Parameters' not in meta:
            continue
        built = build_model(os.path.join(ROOT, model.config), device='meta')
        assert sum(p.numel() for p in built.parameters()) == \
            meta['Parameters'], model.name
        if 'Backbone Parameters' in meta:
            assert sum(p.numel() for p in built.backbone.parameters()) == \
                meta['Backbone Parameters'], model.name


@pytest.mark.slow
def test_download_convert_then_mim_test(tmp_path, one_thread):
    """docs/model_index.md end to end, offline: an official-format VRWKV-T
    file (mmcv 1.x layout, the names of the release) stands in the download
    folder, `mim download` dumps the config, tools/convert_official.py
    converts the file, `mim test mmpretrain` evaluates it on 4 images."""
    import numpy as np
    import torch
    from PIL import Image

    from tests.test_apis.official_state_dicts import (mmcv1_checkpoint,
                                                      official_classifier)
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    torch.save(mmcv1_checkpoint(official_classifier('tiny').tensors()),
               ckpt / 'vrwkv_t_in1k_224.pth')
    data = tmp_path / 'imagenet'
    (data / 'val').mkdir(parents=True)
    (data / 'meta').mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)) \
            .save(data / 'val' / f'{i}.JPEG')
    (data / 'meta' / 'val.txt').write_text(
        ''.join(f'{i}.JPEG {i}\n' for i in range(4)))

    mim('download', 'mmvrwkv', '--config', 'vrwkv_t_in1k', '--dest',
        str(ckpt))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'convert_official.py'),
         str(ckpt / 'vrwkv_t_in1k_224.pth'), str(ckpt / 'vrwkv_t.pth')],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = mim('test', 'mmpretrain', str(ckpt / 'vrwkv_t_in1k.py'),
               '--checkpoint', str(ckpt / 'vrwkv_t.pth'), '--gpus', '0',
               '--cfg-options', f'test_dataloader.dataset.data_root={data}',
               'test_dataloader.num_workers=0',
               'test_dataloader.persistent_workers=False',
               'test_dataloader.batch_size=2',
               f'work_dir={tmp_path / "work"}', cwd=str(tmp_path))
    assert 'accuracy/top1' in proc.stdout + proc.stderr
