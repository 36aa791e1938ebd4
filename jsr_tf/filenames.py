"""File and directory names: every name the package reads or writes in its directories, once.

Raw dir (KuaiSAR CSVs; ``jsr-simulate`` writes them, the importer reads them), data dir
(``jsr-preprocess``), neighbour dirs (``jsr-neighbours``, ``jsr-neighbour-features``,
``jsr-dense-neighbours``, ``jsr-neighbour-serving-table``), run dir (``jsr-train``,
``jsr-evaluate``), compare dir (``jsr-compare``) and export dir (``jsr-export``). Modules import the
names from here; no other module spells them. This module imports nothing from the package.
"""

import os

# -- raw dir: the KuaiSAR CSVs (spec §2) ----------------------------------------------------------
REC_INTER = "rec_inter.csv"
SRC_INTER = "src_inter.csv"
ITEM_FEATURES = "item_features.csv"
USER_FEATURES = "user_features.csv"
SOCIAL_NETWORK = "social_network.csv"

# -- data dir: written by the pipeline under ``<data_dir>`` ---------------------------------------
TFRECORD_SUFFIX = ".tfrecord.gz"
VOCAB_DIR = "vocab"
# The vocabulary TSVs (a header row, then one row per id); their columns are below.
ITEMS_VOCAB = "items.tsv"
WORDS_VOCAB = "words.tsv"
USERS_VOCAB = "users.tsv"
QUERIES_VOCAB = "queries.tsv"  # train-visible queries


class ItemsTsv:
    """Columns of ``ITEMS_VOCAB`` (one train-visible item a row), ``COLUMNS`` in file order."""

    ITEM_ID = "item_id"
    FEED_COUNT = "feed_count"      # train targets of the feed task
    SEARCH_COUNT = "search_count"  # train targets of the search task
    FIRST_SEEN_TS = "first_seen_ts"
    AUTHOR_ID = "author_id"
    CATEGORIES = ("cat1", "cat2", "cat3", "cat4")
    CAPTION = "caption"  # space-separated raw word ids
    COLUMNS = (ITEM_ID, FEED_COUNT, SEARCH_COUNT, FIRST_SEEN_TS, AUTHOR_ID, *CATEGORIES, CAPTION)


class WordsTsv:
    """Columns of ``WORDS_VOCAB``, ``COLUMNS`` in file order."""

    WORD_ID = "word_id"
    COUNT = "count"
    COLUMNS = (WORD_ID, COUNT)


class UsersTsv:
    """Columns of ``USERS_VOCAB``: the user id, then the user features the models read."""

    USER_ID = "user_id"
    FEATURES = ("search_active_level", "rec_active_level", "onehot_feat1", "onehot_feat2")
    COLUMNS = (USER_ID, *FEATURES)


class QueriesTsv:
    """Columns of ``QUERIES_VOCAB``, ``COLUMNS`` in file order."""

    QUERY_WORDS = "query_words"  # space-separated raw word ids
    COUNT = "count"
    COLUMNS = (QUERY_WORDS, COUNT)
STATS_FILE = "stats.json"
SCHEMA_FILE = "schema.json"
MANIFEST_FILE = "manifest.json"
PREPROCESS_CONFIG_FILE = "preprocess_config.json"
DEAD_LETTER_DIR = "dead_letter"
OWNED_FILE = "jsr_owned_files.json"  # what a job owns in its output dir (every Beam job)
RAW_COUNTERS_FILE = "_raw_counters.json"  # staging: the job's counters, before reconciliation
SHARD_COUNTS_FILE = "_shard_counts.json"  # staging: rows per written shard
TIMELINES_DIR, PARTS_DIR = "_timelines", "_parts"  # staging of the neighbour payload passes

# -- neighbour dirs ------------------------------------------------------------------------------
JSONL_SUFFIX = ".jsonl"  # the neighbour table's shards, dead letters, the serving table's JSONL
NEIGHBOUR_CONFIG_FILE = "neighbour_config.json"
NEIGHBOUR_STATS_FILE = "neighbour_stats.json"
NEIGHBOUR_FEATURE_STATS_FILE = "neighbour_feature_stats.json"
SERVING_TABLE_STATS_FILE = "serving_table_stats.json"
SERVING_TABLE_INFO_FILE = "serving_table_info.json"
NEIGHBOUR_RAW_COUNTERS_FILE = "_raw_neighbour_counters.json"  # staging, as are the names below
SNAPSHOTS_FILE = "_snapshots.json"
NEIGHBOUR_FEATURE_RAW_COUNTERS_FILE = "_raw_neighbour_feature_counters.json"  # "-<stage>" per stage
FILE_COUNTS_FILE = "_file_counts.json"
SERVING_TABLE_RAW_COUNTERS_FILE = "_raw_serving_table_counters.json"
SERVING_TABLE_FILE_COUNTS_FILE = "_serving_table_file_counts.json"
SERVING_TABLE_AS_OF_FILE = "_serving_table_as_of.json"

# -- run dir: ``<model_dir>`` of one training run ------------------------------------------------
CONFIG_FILE = "config.json"
FINGERPRINT_FILE = "fingerprint.json"
METRICS_FILE = "metrics.json"  # the results record (jsr_tf/evaluation/report.py)
BEST_DIR = "best"
BEST_WEIGHTS = os.path.join(BEST_DIR, "weights")  # TF checkpoint prefix under the model dir
LATEST_DIR = "latest"
LATEST_WEIGHTS = os.path.join(LATEST_DIR, "weights")
BACKUP_DIR = "backup"
LOGS_DIR = "logs"
PROFILE_DIR = "profile"  # jsr-train --profile
BACKUP_STATE_FILE = "state-{}.json"  # under BACKUP_DIR: one per backup number

# -- compare dir: ``<output_dir>`` of jsr-compare ------------------------------------------------
RUNS_DIR = "runs"  # runs/<model>/seed_<seed>/ (one run dir each)
RESULTS_MD, RESULTS_CSV, RESULTS_PNG = "results.md", "results.csv", "results.png"

# -- export dir: ``<export_base>/<model_name>/<version>`` ----------------------------------------
EXTRA_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"  # under EXTRA_DIR
SAMPLE_REQUEST = "sample_request_{}.json"  # under EXTRA_DIR; REST row-format body of one signature
EXPORT_INFO_FILE = "export_info.json"  # under EXTRA_DIR
