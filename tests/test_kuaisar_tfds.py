"""The TFDS builder on simulator-format files in a temporary manual_dir."""

import json

import pytest

from jsr_tf import features as F
from tests import golden_fixture as G
from tests.testing import read_examples, run_preprocess

tfds = pytest.importorskip("tensorflow_datasets")

CONFIG = {"num_train_negatives": 1, "num_eval_negatives": 3}


def test_tfds_builder_matches_the_pipeline(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from jsr_tf.data.config import PreprocessConfig
    from jsr_tf.pipelines.kuaisar_tfds import Kuaisar, KuaisarConfig

    raw = G.write(str(tmp_path / "manual"))
    config = KuaisarConfig(name="golden", preprocess=PreprocessConfig(**CONFIG))
    builder = Kuaisar(data_dir=str(tmp_path / "tfds"), config=config)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=raw, beam_options=PipelineOptions(["--runner=FnApiRunner"])))
    out = str(tmp_path / "out")
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(CONFIG))
    run_preprocess(raw, out, "--config", str(config_file))

    for split in F.Split:
        got = sorted((int(e[F.TASK]), int(e[F.USER_ID]), int(e[F.TARGET_ROW]),
                      tuple(e[F.NEGATIVES].tolist()), tuple(e[F.FEED_ITEMS].tolist()),
                      tuple(e[F.SEARCH_WORDS].tolist()))
                     for e in tfds.as_numpy(builder.as_dataset(split=split.value)))
        want = sorted((int(e[F.TASK]), int(e[F.USER_ID]), int(e[F.TARGET_ROW]),
                       tuple(e[F.NEGATIVES].tolist()), tuple(e[F.FEED_ITEMS].tolist()),
                       tuple(e[F.SEARCH_WORDS].tolist()))
                      for task in F.Task for e in read_examples(out, split.value, task))
        assert got == want
        assert len(got) == builder.info.splits[split.value].num_examples
    assert builder.info.splits["valid"].num_examples == 4


def test_tfds_builder_explains_manual_download(tmp_path):
    from jsr_tf.pipelines.kuaisar_tfds import Kuaisar

    builder = Kuaisar(data_dir=str(tmp_path / "tfds"))
    with pytest.raises(Exception, match="manual"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(tmp_path / "missing")))
