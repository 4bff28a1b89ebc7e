"""Published results on the real logs this project benchmarks on: the one home of those figures.

Each anchor is a published full-ranking, leave-last-out HR@10 (= recall@10 here) and NDCG@10 on exactly the file
the dataset folder holds (``../shared/data/README.md`` gives the provenance), keyed by the folder's name. Where
the published protocol is exact only on some users (ML-1M-SAS: the 512 users whose second-to-last event the
source publishes), the folder lists them in ``USERS_FILE`` and the benchmark compares those users' figure.
"""

from __future__ import annotations

import os
from typing import Dict, NamedTuple, Optional, Tuple

# A dataset folder may list the users its published protocol is exact on, one key a line.
USERS_FILE = "complete_users.txt"


class Anchor(NamedTuple):
    model: str
    recall_at_10: float
    ndcg_at_10: Optional[float]
    source: str


_S3REC = "S3-Rec README, all-rank table"
PUBLISHED: Dict[str, Tuple[Anchor, ...]] = {
    "amazon-toys": (
        Anchor("GRU4Rec", 0.0176, None, _S3REC),
        Anchor("SASRec", 0.0675, 0.0374, _S3REC),
        Anchor("S3-Rec", 0.0700, 0.0376, _S3REC),
        Anchor("ICLRec", 0.0834, 0.0480, "ICLRec README"),
        Anchor("SASRec, 256-negative sampled softmax", 0.0970, 0.0580, "blondered/transformer_benchmark README"),
    ),
    "yelp": (
        Anchor("GRU4Rec", 0.0263, None, _S3REC),
        Anchor("SASRec", 0.0274, 0.0136, _S3REC),
        Anchor("S3-Rec", 0.0341, 0.0168, _S3REC),
        Anchor("ICLRec", 0.0409, 0.0207, "ICLRec README"),
    ),
    "ml-1m-sas": (  # on the complete sequences: compare the USERS_FILE users' figure
        Anchor("SASRec, BCE loss", 0.239, 0.126, "gSASRec authors' checkpoint"),
        Anchor("BERT4Rec", 0.284, None, "Klenitskiy & Vasilev, RecSys 2023"),
        Anchor("gSASRec", 0.300, 0.173, "Petrov & Macdonald, RecSys 2023"),
        Anchor("SASRec+, full cross-entropy", 0.315, 0.182, "Klenitskiy & Vasilev, RecSys 2023"),
        Anchor("HSTU-large", 0.329, 0.189, "Zhai et al., 2024"),
    ),
}


def published(dataset: str) -> Tuple[Anchor, ...]:
    """The anchors of a dataset folder's name (none for an unknown one)."""
    return PUBLISHED.get(dataset, ())


def best(dataset: str) -> Optional[Anchor]:
    """The highest published recall@10 on ``dataset``, or None."""
    anchors = published(dataset)
    return max(anchors, key=lambda a: a.recall_at_10) if anchors else None


def users_file(data_dir: str) -> str:
    """The folder's list of users its published protocol is exact on, or ''."""
    path = os.path.join(data_dir, USERS_FILE)
    return path if os.path.isfile(path) else ""
