"""Build a dataset and name its file when it cannot be read or is empty."""
import copy
import json

from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS


def build_dataset_checked(cfg: dict):
    """Build and fully initialise a dataset; say which file is at fault when
    it cannot be read or yields no samples.

    Without this, an empty dataset fails in numpy ("need at least one array
    to concatenate") and a truncated annotation file with a bare
    JSONDecodeError, neither naming the file.

    Args:
        cfg (dict): a dataset config (``type``, ``data_root``, ``ann_file``,
            ``data_prefix``, ...), built in the current default scope.

    Returns:
        The dataset, with its annotations loaded (``full_init`` done).

    Raises:
        ValueError: the annotation file is not JSON, or the dataset has no
            samples (the message names the file and the likely cause).
    """
    cfg = copy.deepcopy(cfg)
    where = cfg.get('ann_file') or cfg.get('data_prefix') or ''
    where = f"{cfg.get('type')} (data_root={cfg.get('data_root')!r}, " \
        f'{where!r})'
    empty = (f'the dataset {where} has no samples. Check data_root, '
             'ann_file and data_prefix; detection datasets also drop images '
             'without instances (filter_cfg=dict(filter_empty_gt=True)), so '
             'an annotation file without annotations leaves nothing to '
             'train on')
    kind = cfg.get('type')
    if isinstance(kind, str):
        with DATASETS.switch_scope_and_registry(None) as registry:
            kind = registry.get(kind)
    if isinstance(kind, type) and issubclass(kind, BaseDataset):
        cfg['lazy_init'] = True  # build first, then load the annotations
    try:
        dataset = DATASETS.build(cfg)
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
    except json.JSONDecodeError as error:
        raise ValueError(
            f'the annotation file of {where} is not valid JSON ({error}); '
            'it is empty or truncated: regenerate or download it '
            'again') from error
    except ValueError as error:
        # mmengine serialises the sample list with np.concatenate, which
        # fails this way on an empty list
        if 'need at least one array' in str(error):
            raise ValueError(empty) from error
        raise
    if len(dataset) == 0:
        raise ValueError(empty)
    return dataset
