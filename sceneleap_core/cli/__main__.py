import sys

from sceneleap_core.cli import main

sys.exit(main())
