"""Import a script from tools/ as a module (in-process: no second
interpreter start-up per test)."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def load_tool(name):
    path = os.path.join(ROOT, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'tools_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
