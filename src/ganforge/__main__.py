import os
import sys

from ganforge.cli import main
from ganforge.distributed import launched_by_torchrun

code = main()
if launched_by_torchrun():
    # A training process under torchrun ends here, its files closed and its process group
    # destroyed. Interpreter teardown would still destroy torch's communication threads in
    # C++ static destructors, which can abort a process that finished cleanly ("terminate
    # called without an active exception", SIGABRT, seen under load): skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
