"""``python -m workbench.models train NAME``: retrain a zoo model with its seeded recipe. The recipes use the
white-box attacks (adversarial training), so they live above the models, in ``workbench.training``; this entry
point is never imported by the library."""

import sys

from workbench.training import main

if __name__ == "__main__":
    sys.exit(main())
