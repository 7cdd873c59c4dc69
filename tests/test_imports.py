"""The model and train step must import without TensorFlow (accelerator machines lack it).

`lint-imports` (pyproject.toml) checks the project's own imports; this runs the import, so it
also catches a third-party package that would bring TensorFlow in."""

import subprocess
import sys


def test_models_and_train_do_not_import_tensorflow():
    code = (
        "import sys, vkd_jax.models, vkd_jax.train, vkd_jax.losses; "
        "print('tensorflow' in sys.modules, 'tensorflow_datasets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout + out.stderr
