"""Run the command line: `python -m sharepoint_proxy ...`."""

import os
import sys

from sharepoint_proxy.cli import main

raise SystemExit(main(sys.argv[1:], os.environ))
