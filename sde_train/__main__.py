"""`python -m sde_train …` and `torchrun --nproc_per_node N -m sde_train …`."""
import sys

from sde_train.cli import main

sys.exit(main())
