"""`python -m mixsweep ...` = the `mixsweep` command."""
import sys

from .cli import console

sys.exit(console())
