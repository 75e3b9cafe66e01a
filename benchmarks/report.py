"""What the benchmark scripts record and print around their measurements:
the machine (torch, threads, CPU, load average; the GPU on CUDA), a markdown
table of the results and the JSON results file
``{"machine": ..., "rows": [...]}``, plus the time budget a run may spend
and which attention kernel SDPA picks; for peak-memory cases, the process's
memory counters and the allocator setting that makes them honest."""
import json
import os
import platform
import time

import torch

# glibc serves blocks of 64 KiB and more with mmap and returns them on free,
# so a memory case's VmHWM counts what its step held, not what the heap kept
# from earlier allocations (set in the child process's environment)
MEMORY_ENV = {'MALLOC_MMAP_THRESHOLD_': str(64 * 1024)}


def status_kb(field):
    """A ``/proc/self/status`` counter in KiB (``'VmRSS'``, ``'VmHWM'``)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status (Linux only)')


def load_average():
    """The 1, 5 and 15 minute load averages, rounded to 0.01."""
    return [round(v, 2) for v in os.getloadavg()]


def cpu_name():
    """The CPU's model name (/proc/cpuinfo), else the architecture: the
    committed results come from machines with different CPUs."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(**extra):
    """torch's version and threads, the CPU, then ``extra``, then the load
    before the run (the script adds ``load_after`` at the end)."""
    return dict(torch=torch.__version__, threads=torch.get_num_threads(),
                cpu=cpu_name(), **extra,
                load_before=load_average())


def gpu_info(device):
    """The GPU of ``device`` (name, compute capability, SMs, memory, CUDA
    version of torch); an empty dict for any other device."""
    if torch.device(device).type != 'cuda':
        return {}
    props = torch.cuda.get_device_properties(device)
    return dict(gpu=props.name,
                capability='%d.%d' % (props.major, props.minor),
                sm_count=props.multi_processor_count,
                gpu_memory_gb=round(props.total_memory / 2**30, 1),
                cuda=torch.version.cuda)


def sdpa_kernel(q, k, v):
    """The kernel ``scaled_dot_product_attention``'s default dispatch runs
    for these tensors ('FLASH_ATTENTION', 'EFFICIENT_ATTENTION',
    'CUDNN_ATTENTION', 'MATH', ...), or None where this torch does not
    say (it asks torch's private ``_fused_sdp_choice``)."""
    try:
        from torch.nn.attention import SDPBackend
        names = {int(b): n for n, b in SDPBackend.__members__.items()}
        return names.get(int(torch._fused_sdp_choice(q, k, v)))
    except (AttributeError, ImportError, RuntimeError):
        return None


class Budget:
    """Wall-clock seconds a benchmark run may spend; 0 or less: no limit.

    A run checks :meth:`exhausted` before each case and stops there (a case
    that has started runs to its end), and records :meth:`record` in its
    machine entry.
    """

    def __init__(self, seconds=0.):
        self.seconds = seconds
        self.start = time.perf_counter()
        self.cut_short = False

    def spent(self):
        return time.perf_counter() - self.start

    def exhausted(self):
        """True once the budget is spent (and remembers that a case was
        left out)."""
        if self.seconds > 0 and self.spent() >= self.seconds:
            self.cut_short = True
        return self.cut_short

    def record(self):
        return dict(budget_s=self.seconds or None,
                    spent_s=round(self.spent(), 1), cut_short=self.cut_short)


def print_table(head, rows):
    """A markdown table: ``head`` names the columns, each row is a sequence
    of cells."""
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for cells in rows:
        print('| ' + ' | '.join(str(c) for c in cells) + ' |')


def write_json(path, machine, rows):
    """Write the results to ``path``; an empty path writes nothing. Scripts
    with a time budget call it after every case, so that a run stopped
    from outside leaves the cases it finished."""
    if path:
        tmp = f'{path}.tmp'
        with open(tmp, 'w') as f:
            json.dump(dict(machine=machine, rows=rows), f, indent=1)
        os.replace(tmp, path)
