import sys

from cifarlab.bench.cli import main

sys.exit(main())
