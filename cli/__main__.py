import sys

from ondevice_rec.cli import main

sys.exit(main())
