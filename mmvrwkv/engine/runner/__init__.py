from .dataset_check import build_dataset_checked
from .portable_runner import BEFORE_SAVE_ON_ALL_RANKS, PortableRunner

__all__ = ['PortableRunner', 'BEFORE_SAVE_ON_ALL_RANKS',
           'build_dataset_checked']
