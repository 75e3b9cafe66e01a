"""``import mmvrwkv`` registers classes and changes nothing else: mmengine's
checkpoint loaders and file backends, torch's safe globals for weights-only
loading and every attribute of the mmengine and torch modules already
imported are the same afterwards. Checked in a fresh interpreter, where
nothing else has imported mmvrwkv yet."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r'''
import json
import sys

import torch
from mmengine.fileio.backends import backends, prefix_to_backends
from mmengine.runner import CheckpointLoader


def name(obj):
    return f'{getattr(obj, "__module__", "?")}.' \
        f'{getattr(obj, "__qualname__", repr(obj))}'


def registries():
    return dict(
        loaders={p: name(f) for p, f in CheckpointLoader._schemes.items()},
        backends={k: name(v) for k, v in backends.items()},
        backend_prefixes={k: name(v) for k, v in prefix_to_backends.items()},
        safe_globals=[repr(g) for g in torch.serialization.get_safe_globals()])


def attributes():
    """Every attribute of the mmengine and torch modules imported so far."""
    return {f'{m}.{a}': v for m, mod in list(sys.modules.items())
            if mod is not None and m.split('.')[0] in ('mmengine', 'torch')
            for a, v in list(vars(mod).items())}


before, attrs = registries(), attributes()
import mmvrwkv  # noqa: E402
import mmvrwkv.engine, mmvrwkv.models, mmvrwkv.utils  # noqa: E401,E402,F401
after, now = registries(), attributes()
replaced = sorted(k for k, v in attrs.items() if k in now and now[k] is not v)
print(json.dumps(dict(before=before, after=after, replaced=replaced,
                      hook='CheckpointSafetyHook' in
                      mmvrwkv.engine.__all__)))
'''


def test_import_changes_no_global_state():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    out = subprocess.run([sys.executable, '-c', SCRIPT], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['hook']  # the classes were imported
    for registry in result['before']:
        assert result['after'][registry] == result['before'][registry], \
            registry
    assert result['replaced'] == []
