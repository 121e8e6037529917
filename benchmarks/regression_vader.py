"""A real-text regression task offline: rotten_tomatoes reviews scored by VADER.

No human-rated regression data set (STS-B, SICK) is available offline, so this builds one from
real text with a real-valued target that is honest about what it is: each review's VADER
compound score (Hutto & Gilbert 2014; a lexicon- and rule-based sentiment intensity in [-1, 1]),
computed by the ``vaderSentiment`` package. The model learns to reproduce a rule-based scorer,
not human similarity judgements: it checks the regression path on real sentences (MSE loss,
Pearson, Spearman, the report), it is no STS-B benchmark. Then::

    pip install vaderSentiment==3.3.2          # only for this script, not a freezebench dependency
    python benchmarks/regression_vader.py --output results/rt-vader
    freezebench sweep --config benchmarks/studies/cpu-regression-vader.yaml
    freezebench report results/cpu-regression-vader

Writes ``train.csv``, ``validation.csv`` and ``test.csv`` (columns ``text`` and ``score``) from
the offline copy's splits, every review kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "assets" / "datasets" / "rotten_tomatoes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="folder of the rotten_tomatoes parquet splits")
    parser.add_argument("--output", type=Path, required=True, help="folder to write the CSVs to")
    args = parser.parse_args()
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    args.output.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        texts = pd.read_parquet(args.source / f"{split}.parquet")["text"]
        scores = [analyzer.polarity_scores(text)["compound"] for text in texts]
        pd.DataFrame({"text": texts, "score": scores}).to_csv(args.output / f"{split}.csv",
                                                             index=False)
        print(f"{split}: {len(texts)} reviews, score mean {pd.Series(scores).mean():+.3f}, "
              f"std {pd.Series(scores).std():.3f}")


if __name__ == "__main__":
    main()
