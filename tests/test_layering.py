"""The package's layers import only downward.

    ops (torch only) <- utils <- models <- engine <- apis

``ops`` is the Bi-WKV operator and needs torch alone; ``utils`` holds
helpers for every layer above (checkpoint I/O); ``models`` the VRWKV layers,
backbones and adapter; ``engine`` what trains them (runner, hooks,
optimizer wrappers, CPU data-parallel pieces); ``apis`` what people and
tools call. A module may import its own layer and the layers below, at
module level or inside a function, absolutely or relatively. The package
root (``mmvrwkv/__init__.py``, which imports the layers to register them)
is above all of them.
"""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = 'mmvrwkv'
LAYERS = ('ops', 'utils', 'models', 'engine', 'apis')  # bottom to top
RANK = {name: i for i, name in enumerate(LAYERS)}
# the compiled extension belongs to ops; version.py is below every layer
RANK.update(_ext=RANK['ops'], version=-1)
TOP = len(LAYERS)  # the package root


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def rank(module: str) -> int:
    """The layer of ``mmvrwkv.<child>...``; the root itself is the top."""
    parts = module.split('.')
    return TOP if len(parts) == 1 else RANK[parts[1]]


def _from_targets(base: str, names) -> list:
    # `from mmvrwkv import engine` imports the layer, `from mmvrwkv import
    # __version__` the root
    if base == PACKAGE:
        return [f'{PACKAGE}.{n}' if n in RANK else PACKAGE for n in names]
    return [base]


def imports(source: str, module: str, is_package: bool):
    """(line, imported module) for every import of this package in
    ``source``, including function-level and ``importlib.import_module``
    ones, with relative imports resolved against ``module``."""
    package = module if is_package else module.rpartition('.')[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1])
                if node.module:
                    base = f'{base}.{node.module}'
            else:
                base = node.module
            targets = _from_targets(base, [a.name for a in node.names])
        elif isinstance(node, ast.Call) and \
                ast.unparse(node.func).endswith('import_module') and \
                node.args and isinstance(node.args[0], ast.Constant):
            targets = [str(node.args[0].value)]
        found += [(node.lineno, t) for t in targets
                  if t == PACKAGE or t.startswith(PACKAGE + '.')]
    return found


def layer_name(module: str) -> str:
    r = rank(module)
    return 'the package root' if r == TOP else \
        'version' if r < 0 else LAYERS[r]


def upward_imports(source: str, module: str, is_package: bool):
    own = rank(module)
    return [f'line {line}: {target} ({layer_name(target)})'
            for line, target in imports(source, module, is_package)
            if rank(target) > own]


MODULES = sorted((ROOT / PACKAGE).rglob('*.py'))


def test_every_folder_has_a_layer():
    children = {p.stem for p in (ROOT / PACKAGE).glob('*.py')} | {
        p.parent.name for p in (ROOT / PACKAGE).glob('*/__init__.py')}
    unknown = children - set(RANK) - {'__init__'}
    assert not unknown, (
        f'mmvrwkv/{sorted(unknown)} belong to no layer: add them to LAYERS '
        'in tests/test_layering.py at the place they import from')


@pytest.mark.parametrize('path', MODULES,
                         ids=lambda p: module_name(p))
def test_imports_only_downward(path):
    module = module_name(path)
    upward = upward_imports(path.read_text(), module,
                            path.name == '__init__.py')
    assert not upward, (
        f'{module} ({layer_name(module)}) imports from layers above '
        'it:\n  ' + '\n  '.join(upward) + '\nMove the code to the lower '
        'layer, or the importing module up.')


def test_ops_needs_only_torch():
    allowed = set(sys.stdlib_module_names) | {'torch', PACKAGE}
    for path in (ROOT / PACKAGE / 'ops').rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split('.')[0] in allowed, (
                    f'{module_name(path)} imports {name}: the op layer '
                    'depends on torch only')


@pytest.mark.parametrize('module, source, upward', [
    ('mmvrwkv.models.layers.block', 'from ...engine import PortableRunner',
     ['mmvrwkv.engine']),
    ('mmvrwkv.models', 'from .. import apis', ['mmvrwkv.apis']),
    ('mmvrwkv.utils.flops', 'def f():\n    import mmvrwkv.models.layers\n',
     ['mmvrwkv.models.layers']),
    ('mmvrwkv.ops.x', 'from mmvrwkv import __version__', ['mmvrwkv']),
    ('mmvrwkv.engine.runner.r',
     "import importlib\nimportlib.import_module('mmvrwkv.apis')",
     ['mmvrwkv.apis']),
    ('mmvrwkv.apis.x', 'from ..models import VRWKV\nfrom ..engine import '
     'PortableRunner\nfrom mmvrwkv.ops import bi_wkv', []),
    ('mmvrwkv.ops.x',
     "from . import ext_loader\nimport_module('mmvrwkv._ext')", []),
], ids=['relative', 'relative-package', 'function-level', 'root',
        'import_module', 'downward', 'ops-extension'])
def test_the_check_finds_upward_imports(module, source, upward):
    found = upward_imports(source, module, module.count('.') == 1)
    assert [f.split(': ')[1].split(' ')[0] for f in found] == upward
