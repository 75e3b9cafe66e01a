"""What the benchmark scripts record and print around their measurements:
the machine (torch, threads, CPU, load average), a markdown table of the
results and the JSON results file ``{"machine": ..., "rows": [...]}``."""
import json
import os
import platform

import torch


def load_average():
    """The 1, 5 and 15 minute load averages, rounded to 0.01."""
    return [round(v, 2) for v in os.getloadavg()]


def machine_info(**extra):
    """torch's version and threads, the CPU, then ``extra``, then the load
    before the run (the script adds ``load_after`` at the end)."""
    return dict(torch=torch.__version__, threads=torch.get_num_threads(),
                cpu=platform.processor() or platform.machine(), **extra,
                load_before=load_average())


def print_table(head, rows):
    """A markdown table: ``head`` names the columns, each row is a sequence
    of cells."""
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for cells in rows:
        print('| ' + ' | '.join(str(c) for c in cells) + ' |')


def write_json(path, machine, rows):
    """Write the results to ``path``; an empty path writes nothing."""
    if path:
        with open(path, 'w') as f:
            json.dump(dict(machine=machine, rows=rows), f, indent=1)
