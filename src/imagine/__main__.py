"""`python -m imagine` runs the CLI."""

from .cli import main

main()
