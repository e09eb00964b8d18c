"""The mgspec command line (installed as ``mgspec.cli``; the console script is ``mgspec``)."""
