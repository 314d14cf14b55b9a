"""`python -m embedlab.cli`: the same as the `embedlab` script."""

from embedlab.cli import main

main()
