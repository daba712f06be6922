"""`python -m sglang_matrix` runs the CLI."""

from .cli import main

main()
