"""Peak memory of a width-512 uwm probe (K = 256 samples, one member), chunked over the samples.

    PYTHONPATH=. python benchmarks/probe_memory.py [--chunk-bytes N]

Prints the peak resident memory of the process (ru_maxrss) after the probe and the probe's seconds;
unchunked, uwm's [members, K, n, n'] intermediates alone would be ~8.6 GB at this width.
"""

import argparse
import resource
import time

import uwm_model as um
from uwm_model import trainer as trainer_module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunk-bytes", type=int, default=trainer_module.PROBE_CHUNK_BYTES)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    trainer_module.PROBE_CHUNK_BYTES = args.chunk_bytes
    cfg = um.TrialConfig(hidden=[args.width, args.width], seeds=1, episodes=4, report_every=4, batch_size=4,
                         compile="off", probe={"enabled": True, "samples": 256})
    trainer = um.Trainer(cfg)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    tic = time.perf_counter()
    trainer.probe(1)
    seconds = time.perf_counter() - tic
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"width {args.width}, K 256, chunk budget {args.chunk_bytes / 2**20:.0f} MiB: peak RSS {peak:.0f} MiB "
          f"(before the probe {before:.0f} MiB), probe {seconds:.1f} s")


if __name__ == "__main__":
    main()
