"""The Keras 2 guard in jsr_tf/__init__.py: each case runs in a fresh interpreter."""

import subprocess
import sys
import textwrap

import pytest

# `import jsr_tf` must come first in the child: strip any inherited setting.
_ENV_CLEAR = "import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _ENV_CLEAR + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


def test_import_first_gives_keras2_for_tf_and_tfrs():
    result = _run("""
        import jsr_tf, os
        import tensorflow as tf
        import tensorflow_recommenders as tfrs
        assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
        print(tf.keras.layers.Dense.__module__.split(".")[0])
        print(tfrs.tasks.Ranking.__mro__[1].__module__.split(".")[0])
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["tf_keras", "tf_keras"]


def test_tensorflow_imported_first_but_keras_untouched_still_works():
    result = _run("""
        import tensorflow as tf
        import jsr_tf
        print(tf.keras.layers.Dense.__module__.split(".")[0])
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["tf_keras"]


@pytest.mark.parametrize("touch", ["tf.keras.layers.Dense", "tf.keras.Model"])
def test_keras3_already_bound_raises_clear_import_error(touch):
    result = _run(f"""
        import tensorflow as tf
        _ = {touch}
        try:
            import jsr_tf
        except ImportError as err:
            print("IMPORT_ERROR:", err)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMPORT_ERROR:" in result.stdout
    assert "TF_USE_LEGACY_KERAS=1" in result.stdout
    assert "Keras 3" in result.stdout
