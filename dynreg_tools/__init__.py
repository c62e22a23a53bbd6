"""The host tools of a production line, in one command: `python -m dynreg_tools VERB ...`."""
