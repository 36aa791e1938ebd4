"""Safe job outputs: build in a temporary sibling directory, swap the files in only when the run
succeeded, and never delete a file the job did not write.

A job writes everything into ``staging_dir(output_dir)`` (``<output_dir>.tmp-<random>``, next to
the output). Only after its counts reconcile and its checks pass does ``publish`` move the files
into ``output_dir``, one by one, replacing the job's earlier files of the same name. Then it
deletes the files that the *previous* run owned and this one did not write (e.g. shards of another
shard count), and records what it owns in ``OWNED_FILE``. Any other file in ``output_dir`` (the
user's notes, another tool's output) is never touched. A failed run leaves ``output_dir`` exactly
as it was; its staging directory is left for inspection (it holds the dead letters) or removed.

The swap itself is a sequence of per-file renames (atomic on a local disk, copy + delete on object
stores): a crash in the middle of it can leave a mix of two runs' files; rerun the job then.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import uuid
from typing import Callable, Dict, Iterable, List, Sequence, Set

from apache_beam.io.filesystems import FileSystems

from jsr_tf import filenames as FN
from jsr_tf.data import kuaisar
from jsr_tf.pipelines import launch
from jsr_tf.pipelines.stats import ReconciliationError, read_json, write_json

SHARD = r"-[0-9]{5}-of-[0-9]{5}"  # the shard part of every sharded file name the jobs write


def staging_dir(output_dir: str) -> str:
    """A fresh temporary sibling of ``output_dir``: ``<output_dir>.tmp-<8 hex digits>``."""
    return f"{output_dir.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/")
    if not path.startswith(root + "/"):
        raise ValueError(f"{path!r} is not under {root!r}")
    return path[len(root) + 1:]


def list_files(directory: str) -> List[str]:
    """Every file under ``directory`` (recursively), as sorted paths relative to it."""
    if "://" not in directory:  # local: Beam's match does not descend into subdirectories
        if not os.path.isdir(directory):
            return []
        return sorted(os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/")
                      for root, _, names in os.walk(directory) for name in names)
    try:  # object stores list every object under the prefix
        return match_tree(directory)
    except Exception:  # pylint: disable=broad-except  (a missing directory: no files)
        return []


def match_tree(directory: str) -> List[str]:
    """Every file under ``directory`` by Beam's ``match`` (any filesystem), relative paths.

    The pattern is ``**``: in Beam's patterns a ``*`` stops at ``/``, so ``<dir>/*`` would miss
    ``vocab/`` and ``dead_letter/`` on GCS, and the swap would leave them behind.
    """
    matches = FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list
    return sorted(_relative(m.path, directory) for m in matches)


def previously_owned(output_dir: str, legacy: Sequence[str] = ()) -> Set[str]:
    """The files the job's previous run in ``output_dir`` wrote (relative paths).

    From ``OWNED_FILE``; in a directory written before that file existed, the files whose whole
    relative path matches one of the ``legacy`` regular expressions: the job's own shard names,
    e.g. ``train-feed-00000-of-00004.tfrecord.gz`` (its other files have fixed names and are
    simply replaced).
    """
    owned = FileSystems.join(output_dir, FN.OWNED_FILE)
    if FileSystems.exists(owned):
        return set(read_json(owned)["files"])
    return {f for f in list_files(output_dir) if any(re.fullmatch(p, f) for p in legacy)}


def _ensure_dirs(paths: Iterable[str]) -> None:
    for directory in sorted({posixpath.dirname(p) for p in paths}):
        if directory and not FileSystems.exists(directory):
            FileSystems.mkdirs(directory)


def publish(staging: str, output_dir: str, job: str, legacy: Sequence[str] = ()) -> List[str]:
    """Moves every file of ``staging`` into ``output_dir`` and removes ``staging``.

    Deletes the previous run's files that this run did not write (and only those); writes
    ``OWNED_FILE``.

    Args:
        staging: The finished run's directory (``staging_dir``).
        output_dir: The job's output directory (created if missing).
        job: The job's name, recorded in ``OWNED_FILE``.
        legacy: See ``previously_owned``.

    Returns:
        The relative paths now owned by the job (``OWNED_FILE`` included).
    """
    new = [f for f in list_files(staging) if f != FN.OWNED_FILE]
    old = previously_owned(output_dir, legacy)
    owned_path = FileSystems.join(output_dir, FN.OWNED_FILE)
    targets = [FileSystems.join(output_dir, f) for f in new]
    _ensure_dirs(targets + [owned_path])
    # Claim the union first: a crash during the swap leaves nothing the next run cannot clean.
    write_json({"job": job, "files": sorted(old | set(new) | {FN.OWNED_FILE})}, owned_path)
    # Same-named files are replaced (a POSIX rename; copy + delete on object stores).
    FileSystems.rename([FileSystems.join(staging, f) for f in new], targets)
    stale = [FileSystems.join(output_dir, f) for f in sorted(old - set(new) - {FN.OWNED_FILE})]
    stale = [path for path in stale if FileSystems.exists(path)]
    if stale:
        logging.info("%s: deleting %d files of its previous run in %s.", job, len(stale),
                     output_dir)
        FileSystems.delete(stale)
    owned = sorted(set(new) | {FN.OWNED_FILE})
    write_json({"job": job, "files": owned}, owned_path)
    discard(staging)
    return owned


def discard(staging: str) -> None:
    """Removes a staging directory and its files (ignores one that does not exist)."""
    files = list_files(staging)
    if files:
        FileSystems.delete([FileSystems.join(staging, f) for f in files])
    if "://" not in staging and os.path.isdir(staging):  # local: the empty directories too
        shutil.rmtree(staging)


def run_staged(output_dir: str, job: str, produce: Callable[[str], Dict],
               legacy: Sequence[str] = ()) -> Dict:
    """``produce(staging)`` writes a whole run into a fresh ``staging_dir`` and returns its stats
    (raising if the run is unusable); then ``publish`` swaps it into ``output_dir``.

    A run that fails with an ``InputError`` (e.g. ``cli.JobFailed``) or a
    ``ReconciliationError`` keeps its staging directory for inspection, and the error's message
    says so; any other failure removes it. Either way ``output_dir`` is untouched. A run that
    executed nothing (``produce`` returned a ``launch.GRAPH_ONLY`` summary: a Dataflow dry run or
    template) wrote nothing and publishes nothing.
    """
    staging = staging_dir(output_dir)
    logging.info("%s: writing into %s, then moving the files into %s", job, staging, output_dir)
    try:
        stats = produce(staging)
    except (kuaisar.InputError, ReconciliationError) as err:
        if err.args:
            err.args = (f"{err.args[0]}. {output_dir} is unchanged; this run's files are in "
                        f"{staging}.",) + err.args[1:]
        raise
    except BaseException:
        discard(staging)
        raise
    if launch.GRAPH_ONLY in stats:
        return stats
    publish(staging, output_dir, job, legacy)
    return stats
