"""The SQA workbench: black-box score-based query attacks and the defenses against them (see README.md).

Importing it caps PyTorch's threads at the cores a container's CPU quota allows, where the user set none
(``workbench.speed.fit``). Jupyter kernels started by a server with the classroom extension
(``workbench.course.classroom``) also sleep instead of spinning when idle (``OMP_WAIT_POLICY=PASSIVE``): see
docs/performance.md for what that costs and saves.
"""

from workbench.speed import fit as _fit

_fit()
