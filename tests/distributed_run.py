"""Run by tests/test_distributed.py under torchrun (2 processes) and directly (1 process): one task, adapters."""

import sys

from kemdy_adapters.continual import ContinualRun
from kemdy_adapters.training_args import parse_arguments


def main():
    model_args, data_args, args = parse_arguments(sys.argv[1:])
    ContinualRun(model_args, data_args, args).run()
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
