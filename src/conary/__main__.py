import sys

from conary.cli.main import main

sys.exit(main())
