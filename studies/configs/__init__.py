"""The studies' runs as configs: `python run.py --config=studies/configs/NAME.py:ARG --workdir=W`."""
