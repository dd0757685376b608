import sys

from mphate.cli import main

sys.exit(main())
