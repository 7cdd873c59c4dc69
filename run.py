"""Trains, evaluates and applies VKD from a checkout: `vkd_jax.main`, the installed `vkd-jax`
command, with the command given as `--mode` (train by default).

    python run.py --config=configs/demo.py --workdir=/tmp/vkd-demo          # train, then test
    python run.py --workdir=/tmp/vkd-demo --mode=eval [--split=validation]  # evaluate the best checkpoint
    python run.py --workdir=/tmp/vkd-demo --mode=predict --input=DIR_OR_FILE_OR_GLOB --output=preds.csv

`python run.py --help` lists the flags.
"""

from vkd_jax import main

if __name__ == "__main__":
    main.run()
