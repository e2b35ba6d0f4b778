import sys

from stvsr.cli import main

sys.exit(main())
