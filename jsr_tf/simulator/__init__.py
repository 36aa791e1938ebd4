"""KuaiSAR-format simulator with planted search/feed dynamics and an exact oracle.

Typical use::

    from jsr_tf import simulator
    config = simulator.get_preset("small")
    summary = simulator.generate(config, seed=1, output_dir="raw/")   # five CSVs + raw/oracle/

Modules: ``presets`` (configuration), ``catalog`` / ``population`` / ``world`` (what is drawn once:
categories, words, items, users, communities, schedules), ``dynamics`` (choice distributions,
shared with ``jsr_tf.simulator.oracle``), ``state`` (last search / active interval lookups),
``feed`` / ``search`` / ``events`` (the process; records in ``logs``), ``writer`` (CSV format),
``dirty`` (fault injection), ``groundtruth`` (oracle files), ``generate`` (orchestration),
``clock`` / ``seeding`` / ``ragged`` (helpers).
"""

from jsr_tf.simulator.generate import Simulation, Summary, generate, simulate
from jsr_tf.simulator.presets import PRESETS, DynamicsParams, SimConfig, get_preset

__all__ = ["DynamicsParams", "PRESETS", "SimConfig", "Simulation", "Summary", "generate",
           "get_preset", "simulate"]
