"""`python -m mixsweep ...` = the `mixsweep` command."""
import sys

from .cli import main

sys.exit(main())
