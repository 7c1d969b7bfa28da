"""The SQA workbench: black-box score-based query attacks and the defenses against them (see README.md).

Importing it sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets a policy, before PyTorch starts its
OpenMP runtime: idle OpenMP threads then sleep instead of spinning. Beside a busy core (another kernel, another
job), a spinning thread takes the core from the one doing the work; on this project's 2-core CPU that made the
README's first attack 1.9x slower under load, with the same numbers (``workbench.speed.fit``; the
measurements in docs/performance.md). Import the workbench before ``torch`` for it to count (the classroom
server extension sets it for every kernel it starts). It also caps PyTorch's threads at the cores a container's
CPU quota allows, where the user set none.
"""

import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from workbench.speed import fit as _fit  # noqa: E402  (after the policy: this starts PyTorch)

_fit()
