import sys

from cloudviz.cli import main

sys.exit(main())
