"""The catalogue: category tree, word vocabulary and items.

- a category tree (first level -> second level; a few third/fourth-level leaves) with Zipf
  category shares; every second-level category has ``topics_per_cat2`` sub-topics (numbered
  category-major: topic = cat2 * topics_per_cat2 + k);
- a word vocabulary shared by captions and queries, with disjoint word sets per first-level
  category, second-level category and topic on top of a Zipf background;
- feed items (VIDEO / IMAGE_ATLAS) with Zipf popularity and captions drawn from their topic's words,
  and search-only items (LIVE, USER, …) that never reach the feed or ``item_features.csv``.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from jsr_tf.simulator import clock, ragged
from jsr_tf.simulator.presets import SimConfig

SEARCH_ITEM_TYPES = ("VIDEO", "IMAGE_ATLAS", "LIVE", "USER", "COMMODITY", "MUSIC", "ADVERT")
"""``src_inter.item_type`` by ``Items.kind``; kinds 0 and 1 are feed items."""
_NONVIDEO_SHARES = np.array([0.35, 0.30, 0.15, 0.10, 0.10])  # LIVE .. ADVERT
_TYPE_FACTOR = np.array([1.0, 1.0, 0.6, 0.8, 0.4, 0.3, 0.3])  # search weight multiplier by kind
UPLOAD_TYPES = ("LongImport", "ShortImport", "ShortCamera", "LongCamera", "Web", "UNKNOWN")
_UPLOAD_SHARES = np.array([0.35, 0.25, 0.2, 0.1, 0.07, 0.03])

_CAT1_NAMES = (
    ("美食", "food"), ("旅游", "travel"), ("音乐", "music"), ("舞蹈", "dance"), ("游戏", "games"),
    ("体育", "sports"), ("汽车", "cars"), ("科技", "tech"), ("教育", "education"),
    ("搞笑", "comedy"), ("影视", "film"), ("动漫", "anime"), ("宠物", "pets"),
    ("时尚", "fashion"), ("美妆", "beauty"), ("母婴", "parenting"), ("三农", "farming"),
    ("健身", "fitness"), ("情感", "relationships"), ("生活", "lifestyle"), ("新闻", "news"),
    ("财经", "finance"), ("房产", "real estate"), ("家居", "home"), ("摄影", "photography"),
    ("读书", "books"), ("历史", "history"), ("军事", "military"), ("健康", "health"),
    ("手工", "crafts"), ("才艺", "talent"), ("明星", "celebrities"), ("综艺", "variety shows"),
    ("户外", "outdoors"), ("钓鱼", "fishing"), ("二次元", "acg"), ("数码", "digital"),
    ("职场", "career"), ("法律", "law"), ("文化", "culture"))

# Word sources of captions and queries: topic, second level, first level, background.
CAPTION_SOURCES = np.array([0.30, 0.25, 0.10, 0.35])
QUERY_SOURCES = np.array([0.45, 0.30, 0.10, 0.15])


@dataclasses.dataclass(frozen=True)
class Categories:
    """The category tree. Indices are dense (0..n-1); ids are the sparse ids written to CSV.

    Attributes:
        cat1_id, cat1_name, cat1_name_en: ``[n1]`` first level.
        cat2_id, cat2_name, cat2_name_en: ``[n2]`` second level; ``cat2_parent`` = cat1 index.
        cat2_share: ``[n2]`` share of items (category popularity), sums to 1.
        cat3_id, cat3_parent (cat2 index), cat3_name, cat3_name_en: rare third level.
        cat4_id, cat4_parent (cat3 index), cat4_name, cat4_name_en: rarer fourth level.
    """

    cat1_id: np.ndarray
    cat1_name: Tuple[str, ...]
    cat1_name_en: Tuple[str, ...]
    cat2_id: np.ndarray
    cat2_parent: np.ndarray
    cat2_name: Tuple[str, ...]
    cat2_name_en: Tuple[str, ...]
    cat2_share: np.ndarray
    cat3_id: np.ndarray
    cat3_parent: np.ndarray
    cat3_name: Tuple[str, ...]
    cat3_name_en: Tuple[str, ...]
    cat4_id: np.ndarray
    cat4_parent: np.ndarray
    cat4_name: Tuple[str, ...]
    cat4_name_en: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Word ids and the word sets of the planted topics (values are word indices).

    Attributes:
        word_id: ``[V]`` sparse word ids written to CSV.
        background_cum: ``[V]`` cumulative Zipf background distribution over word indices.
        topic_words, topic_offsets: ragged ``[T]`` word sets of topics.
        cat2_words, cat2_offsets: ragged ``[n2]`` word sets of second-level categories.
        cat1_words, cat1_offsets: ragged ``[n1]`` word sets of first-level categories.
    """

    word_id: np.ndarray
    background_cum: np.ndarray
    topic_words: np.ndarray
    topic_offsets: np.ndarray
    cat2_words: np.ndarray
    cat2_offsets: np.ndarray
    cat1_words: np.ndarray
    cat1_offsets: np.ndarray


@dataclasses.dataclass(frozen=True)
class Items:
    """All items: feed items first (kinds 0/1), then search-only items (kinds >= 2).

    Attributes:
        item_id: ``[I]`` sparse int64 ids (some above 2**31).
        kind: ``[I]`` index into ``SEARCH_ITEM_TYPES``.
        cat2, topic: ``[I]`` true category and topic indices.
        popularity: ``[I]`` Zipf popularity.
        feed_weight, search_weight: ``[I]`` choice weights (feed weight 0 for search-only items).
        caption, caption_offsets: ragged word indices of feed items' captions.
        caption_state: ``[num_feed]`` 0 = list, 1 = missing field (written empty).
        author_id, duration_ms, upload_day, upload_type: ``[num_feed]`` features.
        cat3, cat4: ``[num_feed]`` third/fourth-level indices (-1 = absent).
        hide_categories: ``[num_feed]`` True = categories written as absent (missing features).
        spare_ids: unused ids for dirty-mode rows.
    """

    item_id: np.ndarray
    kind: np.ndarray
    cat2: np.ndarray
    topic: np.ndarray
    popularity: np.ndarray
    feed_weight: np.ndarray
    search_weight: np.ndarray
    caption: np.ndarray
    caption_offsets: np.ndarray
    caption_state: np.ndarray
    author_id: np.ndarray
    duration_ms: np.ndarray
    upload_day: np.ndarray
    upload_type: np.ndarray
    cat3: np.ndarray
    cat4: np.ndarray
    hide_categories: np.ndarray
    spare_ids: np.ndarray

    @property
    def num_feed(self) -> int:
        """Number of feed items (the first ``num_feed`` entries)."""
        return len(self.caption_state)


def distinct_ids(rng: np.random.Generator, n: int, ranges: Tuple[Tuple[int, int, float], ...]
                 ) -> np.ndarray:
    """``n`` distinct int64 ids, a share from each ``(low, high, share)`` range, shuffled."""
    parts = []
    remaining = n
    for i, (low, high, share) in enumerate(ranges):
        count = remaining if i == len(ranges) - 1 else int(round(n * share))
        remaining -= count
        got = np.empty(0, np.int64)
        while len(got) < count:
            got = np.unique(np.concatenate([got, rng.integers(low, high, 2 * count + 8)]))
        parts.append(rng.permutation(got)[:count])
    ids = np.concatenate(parts)
    if len(np.unique(ids)) != n:
        raise ValueError("Id ranges overlap; cannot draw distinct ids.")
    return rng.permutation(ids)


def zipf_weights(rng: np.random.Generator, n: int, exponent: float, offset: float = 1.0
                 ) -> np.ndarray:
    """Zipf weights ``(rank + offset)^-exponent`` over a random ranking of ``n`` entries."""
    return (rng.permutation(n) + offset) ** -exponent


def build_categories(config: SimConfig, rng: np.random.Generator) -> Categories:
    n1, n2 = config.num_cat1, config.num_cat2
    cat1_id = np.sort(rng.choice(np.arange(1, 3 * n1 + 10), n1, replace=False))
    base = [_CAT1_NAMES[i % len(_CAT1_NAMES)] for i in range(n1)]
    cat1_name = tuple(cn + ("" if i < len(_CAT1_NAMES) else str(i)) for i, (cn, _) in
                      enumerate(base))
    cat1_name_en = tuple(en + ("" if i < len(_CAT1_NAMES) else f" {i}") for i, (_, en) in
                         enumerate(base))
    parent_p = zipf_weights(rng, n1, 0.8, 2.0)
    parent = np.concatenate([np.arange(n1), rng.choice(n1, n2 - n1, p=parent_p / parent_p.sum())])
    parent = rng.permutation(parent)
    cat2_id = rng.choice(np.arange(1, 4 * n2 + 50), n2, replace=False)
    rank = np.zeros(n1, np.int64)
    cat2_name, cat2_name_en = [], []
    for c in range(n2):
        p = parent[c]
        rank[p] += 1
        cat2_name.append(f"{cat1_name[p]}{rank[p]}")
        cat2_name_en.append(f"{cat1_name_en[p]} {rank[p]}")
    share = zipf_weights(rng, n2, 0.9, 3.0)
    n3 = max(4, n2 // 3)
    n4 = max(2, n3 // 4)
    cat3_id = rng.choice(np.arange(1, 10 * n3 + 10), n3, replace=False)
    cat4_id = rng.choice(np.arange(1, 10 * n4 + 10), n4, replace=False)
    return Categories(
        cat1_id=cat1_id, cat1_name=cat1_name, cat1_name_en=cat1_name_en,
        cat2_id=cat2_id, cat2_parent=parent, cat2_name=tuple(cat2_name),
        cat2_name_en=tuple(cat2_name_en), cat2_share=share / share.sum(),
        cat3_id=cat3_id, cat3_parent=rng.choice(n2, n3),
        cat3_name=tuple(f"三级{i}" for i in cat3_id),
        cat3_name_en=tuple(f"level3 {i}" for i in cat3_id),
        cat4_id=cat4_id, cat4_parent=rng.choice(n3, n4),
        cat4_name=tuple(f"四级{i}" for i in cat4_id),
        cat4_name_en=tuple(f"level4 {i}" for i in cat4_id))


def build_vocabulary(config: SimConfig, rng: np.random.Generator) -> Vocabulary:
    v = config.num_words
    word_id = rng.choice(np.arange(1, 3 * v + 1), v, replace=False).astype(np.int64)
    rank = rng.permutation(v)
    background = (rank + 1.0) ** -1.05
    stop = np.argsort(rank)[:300]  # The most frequent background words stay out of topic sets.
    pool = rng.permutation(np.setdiff1d(np.arange(v), stop))
    sizes = [(config.num_cat1, 25), (config.num_cat2, 15), (config.num_topics, 8)]
    sets = []
    start = 0
    for count, size in sizes:
        words = pool[start:start + count * size]
        start += count * size
        sets.append((words.astype(np.int64), np.arange(count + 1, dtype=np.int64) * size))
    (c1w, c1o), (c2w, c2o), (tw, to) = sets
    return Vocabulary(word_id=word_id, background_cum=np.cumsum(background / background.sum()),
                      topic_words=tw, topic_offsets=to, cat2_words=c2w, cat2_offsets=c2o,
                      cat1_words=c1w, cat1_offsets=c1o)


def draw_words(rng: np.random.Generator, vocab: Vocabulary, topic: np.ndarray,
               topics_per_cat2: int, cat2_parent: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """One word index per entry of ``topic``, from the topic's mixture of word sources."""
    n = len(topic)
    u = rng.random((n, 2))
    src = np.minimum(np.searchsorted(np.cumsum(sources), u[:, 0], side="right"), 3)
    cat2 = topic // topics_per_cat2
    cat1 = cat2_parent[cat2]

    def from_set(words: np.ndarray, offs: np.ndarray, rows: np.ndarray, x: np.ndarray):
        lo, hi = offs[rows], offs[rows + 1]
        return words[lo + np.minimum((x * (hi - lo)).astype(np.int64), hi - lo - 1)]

    out = np.empty(n, np.int64)
    for k, (words, offs, rows) in enumerate([(vocab.topic_words, vocab.topic_offsets, topic),
                                             (vocab.cat2_words, vocab.cat2_offsets, cat2),
                                             (vocab.cat1_words, vocab.cat1_offsets, cat1)]):
        m = src == k
        out[m] = from_set(words, offs, rows[m], u[m, 1])
    m = src == 3
    out[m] = np.minimum(np.searchsorted(vocab.background_cum, u[m, 1], side="right"),
                        len(vocab.word_id) - 1)
    return out


def build_items(config: SimConfig, cats: Categories, vocab: Vocabulary,
           rng: np.random.Generator) -> Items:
    nf, nn, tp = config.num_items, config.num_nonvideo_items, config.topics_per_cat2
    n = nf + nn
    spare = 2000
    ids = distinct_ids(rng, n + spare, ((100_000, 2**31, 0.6), (2**31, 150_000_000_000, 0.4)))
    # Feed items: every topic gets one item first, the rest follow the category shares.
    cat2 = np.concatenate([np.arange(config.num_topics) // tp,
                           rng.choice(config.num_cat2, nf - config.num_topics, p=cats.cat2_share),
                           rng.choice(config.num_cat2, nn, p=cats.cat2_share)])
    topic = np.concatenate([np.arange(config.num_topics), cat2[config.num_topics:] * tp
                            + rng.integers(0, tp, n - config.num_topics)])
    kind = np.concatenate([(rng.random(nf) < 0.05).astype(np.int64),
                           2 + rng.choice(len(_NONVIDEO_SHARES), nn, p=_NONVIDEO_SHARES)])
    popularity = zipf_weights(rng, n, config.dynamics.popularity_exponent)
    feed_weight = np.where(kind <= 1, popularity, 0.0)
    search_weight = popularity * _TYPE_FACTOR[kind]

    # Captions of feed items.
    length = 3 + rng.poisson(7.0, nf)
    long_caption = rng.random(nf) < 0.01
    length[long_caption] = rng.integers(51, 81, int(long_caption.sum()))
    state_u = rng.random(nf)
    length[state_u < 0.02] = 0  # "[]"
    caption_state = (state_u >= 0.02) & (state_u < 0.03)  # missing field
    length[caption_state] = 0
    caption = draw_words(rng, vocab, np.repeat(topic[:nf], length), tp, cats.cat2_parent,
                         CAPTION_SOURCES)

    num_authors = max(10, nf // 6)
    author_pool = distinct_ids(rng, num_authors, ((10_000, 4_000_000_000, 1.0),))
    author_p = zipf_weights(rng, num_authors, 0.9)
    author = author_pool[rng.choice(num_authors, nf, p=author_p / author_p.sum())]
    author[rng.random(nf) < 0.02] = 0
    duration = np.clip(np.exp(rng.normal(np.log(25_000), 0.9, nf)), 3_000, 600_000)
    period_day = clock.PERIOD_START_MS // clock.DAY_MS
    upload_day = period_day - 1 - np.minimum(rng.exponential(200.0, nf), 1500).astype(np.int64)
    upload_day[rng.random(nf) < 0.03] = 0  # 1970-01-01 = unknown
    upload_type = rng.choice(len(UPLOAD_TYPES), nf, p=_UPLOAD_SHARES)

    # Rare third/fourth levels: only where the tree has a child of the item's category.
    cat3 = _pick_child(rng, cat2[:nf], rng.random(nf) < 0.08, cats.cat3_parent, config.num_cat2)
    cat4 = _pick_child(rng, cat3, (cat3 >= 0) & (rng.random(nf) < 0.15), cats.cat4_parent,
                       len(cats.cat3_id))

    return Items(
        item_id=ids[:n], kind=kind, cat2=cat2, topic=topic, popularity=popularity,
        feed_weight=feed_weight, search_weight=search_weight, caption=caption,
        caption_offsets=ragged.offsets(length), caption_state=caption_state.astype(np.int8),
        author_id=author, duration_ms=np.round(duration).astype(np.int64), upload_day=upload_day,
        upload_type=upload_type, cat3=cat3, cat4=cat4,
        hide_categories=rng.random(nf) < 0.01, spare_ids=ids[n:])


def _pick_child(rng: np.random.Generator, parent: np.ndarray, want: np.ndarray,
                child_parent: np.ndarray, num_parents: int) -> np.ndarray:
    """A uniformly chosen child node of ``parent`` where ``want`` and one exists, else -1."""
    children = np.argsort(child_parent, kind="stable")
    count = np.bincount(child_parent, minlength=num_parents)
    start = ragged.offsets(count)[:-1]
    safe = np.maximum(parent, 0)
    ok = want & (parent >= 0) & (count[safe] > 0)
    pick = start[safe] + (rng.random(len(parent)) * count[safe]).astype(np.int64)
    return np.where(ok, children[np.minimum(pick, len(children) - 1)], -1)
