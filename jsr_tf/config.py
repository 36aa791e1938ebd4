"""Typed experiment configuration: model + training, presets, JSON round trip, overrides.

Override order (TF Model Garden style): preset defaults → ``--config`` JSON file → flag overrides
such as ``train.batch_size=256``. ``jsr_tf.models.factory.build_model`` is the only place a config
turns into layers; layers take plain arguments.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, Iterable, Tuple



NEIGHBOUR_ENCODERS = ("none", "pooled", "shared")


PRECISIONS = ("float32", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Model hyper-parameters; defaults are the UniSAR KuaiSAR reference (spec/unisar.md §11).

    Attributes:
        name: Model family, e.g. ``"unisar"``.
        embedding_dim: E, per-feature embedding width.
        hidden_dim: D, model width.
        num_heads: Attention heads.
        num_layers: Transformer layers per encoder/decoder.
        ffn_dim: Feed-forward width inside the transformer blocks.
        dropout: Dropout rate everywhere.
        num_shared_experts: CGC shared experts.
        num_task_experts: CGC experts per task.
        tower_units: CGC tower widths.
        head_units: Prediction MLP widths before the final logit.
        his_cl_temp: Initial τ of the transition alignment (NT-Xent).
        his_cl_weight: Weight of the transition alignment loss.
        q_i_cl_temp: Initial τ of the query–item InfoNCE.
        q_i_cl_weight: Weight of the query–item InfoNCE.
        num_qi_negatives: Items and queries drawn as InfoNCE negatives per step.
        search_loss_weight: Weight of the search task's total loss.
        causal_transitions: Transition attention reads only earlier behaviours (ablation).
        use_transition_alignment: Ablation switch.
        use_query_item_alignment: Ablation switch.
        use_fusion: Ablation switch (decoders on/off).
        neighbours: Similar-user augmentation (spec/similar_users.md §4): ``"none"`` (the
            base model), ``"pooled"`` (recency-pooled neighbour vectors into a
            ``NeighbourFusion``; UniSAR and SASRec) or ``"shared"`` (the neighbour sequences go
            through the model's own feed/search encoders first; UniSAR only).
        neighbour_heads: Attention heads of the fusion.
        neighbour_head_dim: Size of each fusion head.
        neighbour_dropout: Probability of dropping a neighbour slot per training step.
        neighbour_attention_dropout: Dropout on the fusion's attention weights.
        neighbour_decay: Recency decay γ of the pooled neighbour encoder, in (0, 1].
        neighbour_candidate_aware: The fusion's query is ``[interest; candidate]`` per candidate
            (False: the interest averaged over all candidate columns, padding included, so a
            candidate's score then depends on the rest of the list; SASRec's
            candidate-independent user vector always queries alone).
    """

    name: str = "unisar"
    embedding_dim: int = 32
    hidden_dim: int = 64
    num_heads: int = 2
    num_layers: int = 1
    ffn_dim: int = 64
    dropout: float = 0.1
    num_shared_experts: int = 4
    num_task_experts: int = 4
    tower_units: Tuple[int, ...] = (128, 64)
    head_units: Tuple[int, ...] = (200, 80)
    his_cl_temp: float = 0.1
    his_cl_weight: float = 0.1
    q_i_cl_temp: float = 0.5
    q_i_cl_weight: float = 0.001
    num_qi_negatives: int = 1024
    search_loss_weight: float = 0.1
    causal_transitions: bool = False
    use_transition_alignment: bool = True
    use_query_item_alignment: bool = True
    use_fusion: bool = True
    neighbours: str = "none"
    neighbour_heads: int = 2
    neighbour_head_dim: int = 32
    neighbour_dropout: float = 0.1
    neighbour_attention_dropout: float = 0.1
    neighbour_decay: float = 0.9
    neighbour_candidate_aware: bool = True

    @property
    def uses_neighbours(self) -> bool:
        """Whether the model reads the neighbour payload (``neighbours != "none"``)."""
        return self.neighbours != "none"

    def validate(self) -> "ModelConfig":
        for name in ("embedding_dim", "hidden_dim", "num_heads", "num_layers", "ffn_dim",
                     "num_shared_experts", "num_task_experts", "num_qi_negatives"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` should be a positive integer. Received: `{name}={value!r}`")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` should be in [0, 1). Received: `dropout={self.dropout}`")
        if self.hidden_dim % self.num_heads:
            raise ValueError("`hidden_dim` should be divisible by `num_heads`. Received: "
                             f"`hidden_dim={self.hidden_dim}`, `num_heads={self.num_heads}`")
        for name in ("his_cl_temp", "q_i_cl_temp"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` should be positive. Received: `{getattr(self, name)}`")
        self._validate_neighbours()
        return self

    def _validate_neighbours(self) -> None:
        if self.neighbours not in NEIGHBOUR_ENCODERS:
            raise ValueError(f"`neighbours` should be one of {NEIGHBOUR_ENCODERS}. "
                             f"Received: `neighbours={self.neighbours!r}`")
        for name in ("neighbour_heads", "neighbour_head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"`{name}` should be a positive integer. "
                                 f"Received: `{name}={value!r}`")
        for name in ("neighbour_dropout", "neighbour_attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` should be in [0, 1). Received: `{name}={value!r}`")
        decay = self.neighbour_decay
        if not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
            raise ValueError("`neighbour_decay` should be in (0, 1]. "
                             f"Received: `neighbour_decay={self.neighbour_decay!r}`")
        if not isinstance(self.neighbour_candidate_aware, bool):
            raise ValueError("`neighbour_candidate_aware` should be a bool. Received: "
                             f"`neighbour_candidate_aware={self.neighbour_candidate_aware!r}`")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings; defaults are the UniSAR reference (spec/unisar.md §10–11).

    Attributes:
        batch_size: Feed rows per step (the search batch is sized so that search data cycles
            about once per feed epoch, spec/unisar.md §9).
        eval_batch_size: Rows per evaluation batch.
        learning_rate: Initial learning rate.
        min_learning_rate: Floor of reduce-on-plateau.
        optimizer: ``"adam"`` (coupled L2, the reference) or ``"adamw"`` (decoupled decay).
        l2: Coupled L2 coefficient (added to gradients) or AdamW weight decay.
        adam_epsilon: Adam epsilon (PyTorch default 1e-8).
        plateau_patience: Epochs without improvement tolerated before the LR drops (PyTorch
            rule: the drop happens after ``patience + 1`` bad epochs).
        plateau_factor: LR multiplier on a plateau.
        plateau_threshold: Relative improvement that counts (PyTorch ``rel`` mode).
        early_stopping_patience: Stop once the best epoch is more than this many epochs old.
        epochs: Maximum epochs.
        steps_per_epoch: Feed batches per epoch; None = one pass over the feed train data.
        seed: Model seed (never the candidate seed).
        jit_compile: Compile the train step with XLA.
        block_jit_compile: Compile each transformer block's call with XLA inside an otherwise
            uncompiled step (the dynamic-shape shortcuts stay outside; training only, the export
            never compiles them). Off by default: measured slower on AVX2 CPUs (BENCHMARKS §3).
        precision: ``"float32"`` (the reference) or ``"mixed_bfloat16"``: the transformer blocks
            and the query–item InfoNCE compute their matmuls in bfloat16 with float32 variables;
            the InfoNCE's log-sum-exp and every loss stay float32. Worth it only where the
            hardware has bf16 arithmetic (AVX512_BF16 / AMX, recent GPUs and TPUs); never
            chosen automatically (BENCHMARKS §3).
        l2_rows_in_batch: Named deviation (issue 14), off by default: the coupled L2 of an
            embedding table whose gradient arrives as rows is added to those rows only, not to
            the whole table (``models/base.py``). Changes the training computation.
        resample_negatives: Fresh training negatives per batch instead of the stored ones.
        shuffle_buffer: Examples in the train shuffle buffer.
        deterministic: Same seed, same weights (on by default): training and its evaluations
            run their ``tf.function``s without Grappler's memory optimizer, whose ``AddN``
            rewrite sums a shared variable's gradients in thread-arrival order
            (``jsr_tf.training.determinism``). Changes no value, only the order of float32
            sums; false keeps TensorFlow's default. GPU kernels need
            ``tf.config.experimental.enable_op_determinism()`` besides.
    """

    batch_size: int = 1024
    eval_batch_size: int = 512
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-6
    optimizer: str = "adam"
    l2: float = 3e-5
    adam_epsilon: float = 1e-8
    plateau_patience: int = 3
    plateau_factor: float = 0.1
    plateau_threshold: float = 1e-4
    early_stopping_patience: int = 5
    epochs: int = 100
    steps_per_epoch: int = 0
    seed: int = 20230601
    jit_compile: bool = False
    block_jit_compile: bool = False
    precision: str = "float32"
    l2_rows_in_batch: bool = False
    resample_negatives: bool = False
    shuffle_buffer: int = 10_000
    deterministic: bool = True

    def validate(self) -> "TrainConfig":
        for name in ("batch_size", "eval_batch_size", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` should be a positive integer. Received: `{name}={value!r}`")
        for name in ("steps_per_epoch", "shuffle_buffer", "plateau_patience",
                     "early_stopping_patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                hint = " (0 = one pass over the data)" if name == "steps_per_epoch" else ""
                raise ValueError(f"`{name}` should be a non-negative integer{hint}. "
                                 f"Received: `{name}={value!r}`")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"`optimizer` should be 'adam' or 'adamw'. Received: `{self.optimizer!r}`")
        if not 0 < self.min_learning_rate <= self.learning_rate:
            raise ValueError("`min_learning_rate` should be in (0, learning_rate]. Received: "
                             f"`{self.min_learning_rate}` with learning_rate `{self.learning_rate}`")
        if self.l2 < 0:
            raise ValueError(f"`l2` should be >= 0. Received: `l2={self.l2}`")
        if self.precision not in PRECISIONS:
            raise ValueError(f"`precision` should be one of {PRECISIONS}. "
                             f"Received: `precision={self.precision!r}`")
        return self


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole run: the preset it came from, the model and the training settings."""

    preset: str = "unisar"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def validate(self) -> "ExperimentConfig":
        self.model.validate()
        self.train.validate()
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "ExperimentConfig":
        unknown = sorted(set(values) - {"preset", "model", "train"})
        if unknown:
            raise ValueError(f"Unknown ExperimentConfig fields: {unknown}")
        return cls(preset=values.get("preset", "custom"),
                   model=_sub(ModelConfig, values.get("model", {}), "model"),
                   train=_sub(TrainConfig, values.get("train", {}), "train")).validate()

    def override(self, assignments: Iterable[str]) -> "ExperimentConfig":
        """Applies ``section.field=value`` strings (value parsed as JSON, else kept as text)."""
        values = self.to_dict()
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            section, dot, field = key.strip().partition(".")
            if not sep or not dot or section not in ("model", "train"):
                raise ValueError("Overrides look like `train.batch_size=256` or "
                                 f"`model.dropout=0.2`. Received: `{assignment}`")
            if field not in values[section]:
                raise ValueError(f"Unknown field `{section}.{field}`. Known: "
                                 f"{sorted(values[section])}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            values[section][field] = value
        return ExperimentConfig.from_dict(values)


_FIELD_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _typed(section: str, field: dataclasses.Field, value: Any) -> Any:
    """``value`` checked against the field's annotation (ints are accepted for floats).

    Raises:
        ValueError: "`train.learning_rate` expects a float. Received: `'fast'`".
    """
    annotation = str(field.type)
    if annotation.startswith("Tuple[int"):
        items = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in items):
            return tuple(value)
        raise ValueError(f"`{section}.{field.name}` expects a list of integers, e.g. "
                         f"`{section}.{field.name}=[128,64]`. Received: `{value!r}`")
    expected = _FIELD_TYPES.get(annotation)
    if expected is None:
        return value
    if isinstance(value, expected) and (annotation == "bool" or not isinstance(value, bool)):
        return float(value) if annotation == "float" else value
    article = "an" if annotation == "int" else "a"
    raise ValueError(f"`{section}.{field.name}` expects {article} {annotation}. "
                     f"Received: `{value!r}`")


# Fields renamed since runs were first written: old name -> new name, per section. A run's
# config.json written before the rename still loads (``jsr-evaluate``, ``jsr-export``).
_RENAMED = {"model": {"src_loss_weight": "search_loss_weight"}}


def _sub(cls, values: Dict[str, Any], section: str):
    renamed = _RENAMED.get(section, {})
    both = sorted(old for old, new in renamed.items() if old in values and new in values)
    if both:
        raise ValueError(f"`{section}.{both[0]}` is the old name of `{section}.{renamed[both[0]]}`:"
                         " give one of them.")
    values = {renamed.get(k, k): v for k, v in values.items()}
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields: {unknown}")
    return cls(**{k: _typed(section, known[k], v) for k, v in values.items()})


# ---------------------------------------------------------------------------------------------
# Presets.
_PRESETS: Dict[str, Callable[[], ExperimentConfig]] = {}


def register_preset(fn: Callable[[], ExperimentConfig]) -> Callable[[], ExperimentConfig]:
    """Registers a preset under the function's name."""
    _PRESETS[fn.__name__] = fn
    return fn


def preset(name: str) -> ExperimentConfig:
    """The named preset, validated."""
    if name not in _PRESETS:
        raise ValueError(f"Unknown preset `{name}`. Known: {sorted(_PRESETS)}")
    return _PRESETS[name]().validate()


def preset_names() -> Tuple[str, ...]:
    return tuple(sorted(_PRESETS))


@register_preset
def unisar() -> ExperimentConfig:
    """UniSAR at the reference hyper-parameters."""
    return ExperimentConfig(preset="unisar")


@register_preset
def sasrec() -> ExperimentConfig:
    """SASRec (Kang & McAuley, 2018), the package preset of spec/related_models.md §1.

    Feed task only; causal self-attention over the left-padded L = 60 item sequence (feed
    positives + search clicks merged in time order, UniSAR's item encoder): d 64, 2 blocks,
    1 head, FFN d, dropout 0.2, Adam lr 1e-3, no L2 (the reference has no embedding L2), the
    package batch size (the reference trains at 128).
    Not configurable here: Adam β2 is Keras's 0.999, not the reference's 0.98 (no config
    field); the sequence source and item features are ``SASRec`` constructor arguments.
    """
    return ExperimentConfig(
        preset="sasrec",
        model=ModelConfig(name="sasrec", hidden_dim=64, num_layers=2, num_heads=1, ffn_dim=64,
                          dropout=0.2),
        train=TrainConfig(learning_rate=1e-3, l2=0.0))


@register_preset
def search_baseline() -> ExperimentConfig:
    """Personalised search (TEM/ZAM family): a transformer over [query; history items]."""
    return ExperimentConfig(preset="search_baseline",
                            model=ModelConfig(name="search_baseline", ffn_dim=256))


@register_preset
def mixed_sequence() -> ExperimentConfig:
    """One transformer over the interleaved typed sequence (USER / Query-SeqRec style)."""
    return ExperimentConfig(preset="mixed_sequence",
                            model=ModelConfig(name="mixed_sequence", num_layers=2, ffn_dim=256,
                                              dropout=0.2))


@register_preset
def sesrec() -> ExperimentConfig:
    """SESRec (Si et al., SIGIR 2023) with an added search head."""
    return ExperimentConfig(preset="sesrec",
                            model=ModelConfig(name="sesrec", q_i_cl_temp=0.1, q_i_cl_weight=0.1),
                            train=TrainConfig(l2=1e-6))


@register_preset
def uditsr() -> ExperimentConfig:
    """UDITSR (Zhang et al., KDD 2024) on the example contract (``jsr_tf/models/uditsr.py``):
    heads 1.5d → 0.75d (96, 48), dropout 0 and AdamW weight decay 1e-5 as the paper; lr 1e-3
    and d 64 (the package's), no query–item InfoNCE (UDITSR has none)."""
    return ExperimentConfig(preset="uditsr",
                            model=ModelConfig(name="uditsr", head_units=(96, 48), dropout=0.0,
                                              use_query_item_alignment=False),
                            train=TrainConfig(optimizer="adamw", l2=1e-5))


def _unisar_ablation(preset_name: str, **fields: Any) -> ExperimentConfig:
    return ExperimentConfig(preset=preset_name, model=ModelConfig(**fields))


@register_preset
def unisar_no_transition_alignment() -> ExperimentConfig:
    """UniSAR ablation: without the transition alignment (NT-Xent) losses."""
    return _unisar_ablation("unisar_no_transition_alignment", use_transition_alignment=False)


@register_preset
def unisar_no_query_item_alignment() -> ExperimentConfig:
    """UniSAR ablation: without the query–item InfoNCE."""
    return _unisar_ablation("unisar_no_query_item_alignment", use_query_item_alignment=False)


@register_preset
def unisar_no_fusion() -> ExperimentConfig:
    """UniSAR ablation: without the cross-attention fusion decoders."""
    return _unisar_ablation("unisar_no_fusion", use_fusion=False)


@register_preset
def unisar_causal() -> ExperimentConfig:
    """UniSAR with ``causal_transitions`` on: transitions read only earlier behaviours."""
    return _unisar_ablation("unisar_causal", causal_transitions=True)


@register_preset
def unisar_nbr() -> ExperimentConfig:
    """UniSAR + similar-user neighbours (spec/similar_users.md §4): pooled neighbour encoder and
    two ``NeighbourFusion`` instances (on ``rec_interest`` and ``src_interest``). Needs data
    with the neighbour payload (``jsr-neighbour-features``); without it every slot is empty and
    the model scores exactly like ``unisar``."""
    return _unisar_ablation("unisar_nbr", neighbours="pooled")


@register_preset
def sasrec_nbr() -> ExperimentConfig:
    """SASRec + similar-user neighbours: one ``NeighbourFusion`` on the user vector ``H_last``."""
    base = sasrec()
    return dataclasses.replace(base, preset="sasrec_nbr",
                               model=dataclasses.replace(base.model, neighbours="pooled"))


@register_preset
def two_tower() -> ExperimentConfig:
    """Two-tower retrieval head (``tfrs.tasks.Retrieval``, in-batch softmax with logQ
    correction) that the ``retrieve`` serving signature indexes over the whole catalogue."""
    return ExperimentConfig(preset="two_tower", model=ModelConfig(name="two_tower"),
                            train=TrainConfig(batch_size=512, l2=0.0))

