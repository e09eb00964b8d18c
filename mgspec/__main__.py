"""``python -m mgspec`` (and ``torchrun -m mgspec``) runs the command line."""

from mgspec.cli.app import main

if __name__ == "__main__":
    main()
