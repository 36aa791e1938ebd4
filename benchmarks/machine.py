"""The machine a benchmark ran on, recorded in every JSON the benchmarks write.

The project's VMs differ between sessions (AVX2 only, or AVX-512 with AVX512_BF16), and the
speed of a step depends on it, so every result names the CPU model, its vector-instruction
flags, the TensorFlow version and the thread settings.
"""

from __future__ import annotations

import os
import platform
import re
from typing import Any, Dict

FLAG_PREFIXES = ("avx", "fma", "amx", "sse4")


def cpu() -> Dict[str, Any]:
    """``{"cpu": model name, "cpu_flags": [avx*, fma, amx*, sse4*]}`` from /proc/cpuinfo."""
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {"cpu": model, "cpu_flags": flags}
    found = re.search(r"model name\s*:\s*(.+)", text)
    model = found.group(1).strip() if found else model
    found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    if found:
        flags = sorted(f for f in found.group(1).split() if f.startswith(FLAG_PREFIXES))
    return {"cpu": model, "cpu_flags": flags}


def machine_info() -> Dict[str, Any]:
    """CPU model and flags, core count, Python and TensorFlow versions, thread settings."""
    import tensorflow as tf  # deferred: the caller has imported jsr_tf first

    return {"platform": platform.platform(), **cpu(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}
