"""Evaluate a config's model at its random initialisation (the baseline the
demo's trained numbers are compared with).

Usage:
    python tools/eval_untrained.py configs/demo/upernet_vrwkv_demo_shapes.py
"""
import argparse
import tempfile

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmvrwkv.utils import enable_safe_loading


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as in mim test')
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = tempfile.mkdtemp(prefix='untrained_')
    cfg.load_from = None
    cfg.randomness = dict(seed=args.seed)
    runner = Runner.from_cfg(cfg)
    # init_cfg weights load here, before the runner's hooks run
    enable_safe_loading()
    runner.model.init_weights()
    metrics = runner.test()
    print('untrained:', {k: round(float(v), 4) for k, v in metrics.items()})


if __name__ == '__main__':
    main()
