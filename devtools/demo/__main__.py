"""Entry point of ``python -m devtools.demo``: Ctrl-C while the libraries load exits quietly (130)."""

import signal
import sys

signal.signal(signal.SIGINT, lambda _signum, _frame: sys.exit(130))  # main() restores the default

from devtools.demo.runner import main  # noqa: E402  # after the handler, on purpose

sys.exit(main())
