"""Run the command line: `python -m sharepoint_proxy ...`."""

import os
import sys

# A command run beside the service (`docker compose exec proxy ...`) inherits its metrics
# directory; its own counters must not be added to the service's /metrics.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from sharepoint_proxy.cli import main  # imported after the environment is settled

raise SystemExit(main(sys.argv[1:], os.environ))
