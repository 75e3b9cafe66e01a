"""ONNX benchmark: VRWKV-T and VRWKV6-T backbone latency in onnxruntime
against PyTorch eager, on the CPU, in one process with one thread count.

For each model and input size the backbone (random weights, eval, batch 1,
float32, output = last layer's feature map) is exported by
``mmvrwkv.apis.export_onnx`` (plain ``torch.onnx.export``: Bi-WKV / Bi-WKV6
as their standard-operator chunked forms) and timed three ways, interleaved
run by run so that the load of a shared machine falls on all of them
alike:

* ``torch``: PyTorch eager with the compiled kernel (the normal path);
* ``torch_chunked``: PyTorch eager, the same weights in a backbone built
  with ``wkv_backend='chunked'`` (the form the ONNX graph holds), which
  separates the cost of the chunked form from that of the runtime;
* ``onnxruntime``: the exported file, CPUExecutionProvider, all graph
  optimisations, ``intra_op_num_threads`` = the torch thread count,
  sequential execution, no spinning of idle pool threads (they would take
  the cores from the torch run that follows).

Each figure is the median of ``--repeats`` timed runs after ``--warmup``
runs. The JSON also records the largest difference of the onnxruntime
output from PyTorch's (relative to the output's largest magnitude), the
export time and file size, versions and the load average before and after.

Usage:
    python benchmarks/bench_onnx.py [--models vrwkv_t vrwkv6_t]
        [--sizes 224 512] [--repeats 20] [--threads N ...]
        [--json docs/bench_onnx.json]
"""
import argparse
import json
import os
import os.path as osp
import statistics
import tempfile
import time

import numpy as np
import torch

from report import cpu_name, load_average

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def rel_diff(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


def export_size(model, size, tmp):
    """The backbone (compiled kernels), the same weights with
    wkv_backend='chunked', a sample input and the ONNX file for ``size``
    px."""
    from mmvrwkv.apis.export import TensorForward, export_onnx
    from mmvrwkv.models import VRWKV, VRWKV6
    kind = VRWKV6 if model == 'vrwkv6_t' else VRWKV
    backbones = []
    for backend in ('compiled', 'chunked'):
        torch.manual_seed(0)
        backbones.append(TensorForward(kind(
            arch='tiny', img_size=224, patch_size=16, out_type='featmap',
            wkv_backend=backend).eval(), 'backbone'))
    module, chunked = backbones
    x = torch.randn(1, 3, size, size,
                    generator=torch.Generator().manual_seed(0))
    path = osp.join(tmp, f'{model}_{size}.onnx')
    start = time.perf_counter()
    export_onnx(chunked, x, path)
    return module, chunked, x, path, time.perf_counter() - start


def time_case(module, chunked, x, path, threads, repeats, warmup):
    """Median latencies of torch, torch with the chunked operator and
    onnxruntime at ``threads`` threads, interleaved run by run."""
    import onnxruntime as ort
    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # onnxruntime's pool spins after each run by default, which takes the
    # cores from the torch run that follows it
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(path, options,
                                   providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: x.numpy()}

    def run_torch():
        return module(x)[0].numpy()

    def run_torch_chunked():
        return chunked(x)[0].numpy()

    def run_ort():
        return session.run(None, feed)[0]

    runs = {'torch': run_torch, 'torch_chunked': run_torch_chunked,
            'onnxruntime': run_ort}
    times = {name: [] for name in runs}
    outputs = {}
    load_before = load_average()
    with torch.no_grad():
        for _ in range(warmup):
            for name, fn in runs.items():
                outputs[name] = fn()
        for _ in range(repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    row = dict(threads=threads, timed_runs=repeats)
    for name, ts in times.items():
        row[f'{name}_ms'] = round(statistics.median(ts) * 1e3, 2)
        row[f'{name}_min_ms'] = round(min(ts) * 1e3, 2)
    row['onnxruntime_vs_torch'] = round(
        row['onnxruntime_ms'] / row['torch_ms'], 2)
    row['max_rel_diff_onnxruntime'] = rel_diff(outputs['onnxruntime'],
                                               outputs['torch'])
    row['max_rel_diff_torch_chunked'] = rel_diff(outputs['torch_chunked'],
                                                 outputs['torch'])
    row['load'] = [load_before, load_average()]
    return row


def print_table(rows):
    head = ['model', 'px', 'T', 'threads', 'torch ms',
            'torch + chunked op ms', 'onnxruntime ms', 'ort / torch',
            'max rel diff (ort)']
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['tokens']} | "
              f"{r['threads']} | "
              f"{r['torch_ms']:.1f} | "
              f"{r['torch_chunked_ms']:.1f} | {r['onnxruntime_ms']:.1f} | "
              f"{r['onnxruntime_vs_torch']:.2f} | "
              f"{r['max_rel_diff_onnxruntime']:.1e} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', default=['vrwkv_t', 'vrwkv6_t'],
                   choices=['vrwkv_t', 'vrwkv6_t'])
    p.add_argument('--sizes', type=int, nargs='+', default=[224, 512])
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, nargs='+', default=None,
                   help='torch and onnxruntime thread counts, each timed '
                   "in turn (default: torch's default, the number of "
                   'cores)')
    p.add_argument('--json',
                   default=os.path.join(ROOT, 'docs', 'bench_onnx.json'),
                   help="results file ('' writes none)")
    args = p.parse_args()
    thread_counts = args.threads or [torch.get_num_threads()]

    import onnx
    import onnxruntime
    machine = dict(cpu=cpu_name(), cores=os.cpu_count(),
                   torch=torch.__version__, onnx=onnx.__version__,
                   onnxruntime=onnxruntime.__version__,
                   load_before=load_average())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for size in args.sizes:
                module, chunked, x, path, export_s = export_size(
                    model, size, tmp)
                for threads in thread_counts:
                    row = dict(model=model, size=size,
                               tokens=(size // 16)**2,
                               export_s=round(export_s, 1),
                               onnx_mb=round(osp.getsize(path) / 2**20, 1))
                    row.update(time_case(module, chunked, x, path, threads,
                                         args.repeats, args.warmup))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                os.remove(path)
    machine['load_after'] = load_average()
    result = dict(machine=machine, rows=rows)
    print_table(rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
            f.write('\n')


if __name__ == '__main__':
    main()
