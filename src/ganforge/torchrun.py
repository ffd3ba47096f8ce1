"""``torchrun`` for ``ganforge train --nproc N``, quiet about its workers' failures.

The training processes already said what went wrong, in one line, once (rank 0). torchrun
would add its own report on top: an error log per failed worker and a ChildFailedError
traceback. This is torch's own launcher (``torch.distributed.run.run``) with those silenced;
its exit code is the failed workers' (2 for ganforge's errors).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    args = get_args_parser().parse_args(list(argv))
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()  # the root cause: the earliest to fail
        ours = (failure.error_file_data or {}).get("message")  # a str: ganforge's one line
        print("ganforge: error: " + (ours if isinstance(ours, str) else
              f"training process {rank} exited with code {failure.exitcode}"),
              file=sys.stderr)
        codes = [f.exitcode for f in e.failures.values()]
        return next((c for c in codes if c > 0), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
