"""``python -m enclave_console``: the same as ``enclave-console``."""

import sys

from enclave_console.cli import main

sys.exit(main())
