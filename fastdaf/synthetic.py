"""A synthetic task on which dynamic fusion must win: per utterance only one modality carries the
label, the other carries a distractor label, and a cue in each modality's features says whether it
is the informative one. Static weights, equal weights and single modalities cannot follow that."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .errors import InputError
from .features import FeatureSet


def make_cue_task(
    sizes: Mapping[str, int] = {"train": 4000, "valid": 1000, "test": 1000},
    *,
    modalities: Mapping[str, int] = {"text": 32, "audio": 16},
    noise: float = 0.3,
    cue: float = 0.5,
    seed: int = 0,
    only: str | None = None,
) -> tuple[FeatureSet, torch.Tensor]:
    """Rows for each named split, and the index of the informative modality of each row.

    Row features for modality m: noise * N(0, I) + y_m * u_m + (+cue if informative else -cue) * v_m,
    with fixed random unit directions u_m (label) and v_m (cue); y_m is the row's label in the
    informative modality and an independent U(-3, 3) draw in the others. Labels are U(-3, 3).
    `only`: one modality informative in every row (the others carry only distractors), the case where a
    modality's controls must show that it carries nothing (fastdaf.evaluation).
    """
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes.values())
    names = list(modalities)
    label = torch.rand(n, generator=g) * 6 - 3
    informative = torch.randint(len(names), (n,), generator=g)
    if only is not None:
        if only not in names:
            raise InputError(f"only={only!r} is not one of the modalities {names}")
        informative = torch.full((n,), names.index(only))
    features = {}
    for i, (name, dim) in enumerate(modalities.items()):
        u = torch.nn.functional.normalize(torch.randn(dim, generator=g), dim=0)
        v = torch.nn.functional.normalize(torch.randn(dim, generator=g), dim=0)
        is_informative = informative == i
        distractor = torch.rand(n, generator=g) * 6 - 3
        carried = torch.where(is_informative, label, distractor)
        sign = is_informative.float() * 2 - 1
        features[name] = noise * torch.randn(n, dim, generator=g) + carried[:, None] * u + (cue * sign)[:, None] * v
    splits = [name for name, count in sizes.items() for _ in range(count)]
    data = FeatureSet(
        features=features,
        present=torch.ones(n, len(names), dtype=torch.bool),
        labels=label,
        ids=[f"synthetic-{i}" for i in range(n)],
        splits=splits,
    )
    return data, informative
