"""A local file backend that never leaves a half-written file."""
import os
import tempfile

from mmengine.fileio import LocalBackend, register_backend

NAME = 'atomic_local'


def atomic_write(data: bytes, filepath: str) -> None:
    """Write ``data`` to a temporary file beside ``filepath``, flush it to
    disk, then rename it over ``filepath`` (atomic on POSIX): a reader, or
    a resume after the process is killed, sees the old file or the new one,
    never a truncated one."""
    folder = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix='.' + os.path.basename(filepath) + '.',
        suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """mmengine's LocalBackend with atomic ``put``/``put_text``.

    Use it for checkpoints (and the ``last_checkpoint`` pointer that
    ``--resume`` reads) with ``default_hooks.checkpoint.backend_args=
    dict(backend='atomic_local')``.
    """

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


def register_atomic_backend() -> None:
    """Register :class:`AtomicLocalBackend` as ``'atomic_local'`` in
    mmengine's file backends (idempotent).

    Not done on ``import mmvrwkv``: ``CheckpointSafetyHook`` calls it when a
    run starts, before the checkpoint hook opens its backend.
    """
    register_backend(NAME, AtomicLocalBackend, force=True)
