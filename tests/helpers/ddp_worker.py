"""Run under torchrun by tests/test_distributed.py: train, then each rank dumps its weights."""

import os
import sys

import torch.distributed as dist
from safetensors.torch import save_file

import ganforge

out, preset, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
extra = dict(kv.split("=", 1) for kv in sys.argv[4:])
run = ganforge.train(preset=preset, dataset="mnist-sample", steps=steps, batch_size=16,
                     log_every=5, sample_every=1000, ckpt_every=5, out=out, progress=False,
                     sync_bn=extra.get("sync_bn") == "1")
rank = int(os.environ["RANK"])
# train() tears down the process group it created (left to exit, its threads can abort)
with open(os.path.join(out, f"rank-{rank}.group"), "w") as f:
    f.write("initialized" if dist.is_initialized() else "destroyed")
weights = {f"G.{k}": v for k, v in run.G.named_parameters()}
weights.update({f"D.{k}": v for k, v in run.D.named_parameters()})
save_file({k: v.detach().contiguous() for k, v in weights.items()},
          os.path.join(out, f"rank-{rank}.safetensors"))
