"""python -m tests.support.reliability.soak [SECONDS]: a quick run, figures as JSON."""

import sys

from tests.support.reliability.soak.run import main

main(sys.argv[1:])
