"""End to end on the real pretrained all-MiniLM-L6-v2 and the offline rotten_tomatoes copy."""

from __future__ import annotations

from freezebench.config import RunConfig
from freezebench.pipeline import run
from freezebench.results import read_records

from .conftest import minilm_path, rotten_tomatoes_path


def test_real_model_learns_sentiment_from_cached_features(tmp_path):
    config = RunConfig(model=minilm_path(), dataset=str(rotten_tomatoes_path()),
                       strategy="head", learning_rate=1e-2, num_train_epochs=8,
                       max_train_samples=600, max_eval_samples=200,
                       output_dir=str(tmp_path), disable_tqdm=True)
    record = run(config)
    assert read_records(tmp_path)[0].id == record.id
    assert record.params.trainable == 770           # 384 x 2 + 2: the new head alone
    assert record.params.total == 22_713_986
    assert record.data.sizes == {"train": 600, "validation": 200, "test": 200}
    # Pretrained sentence features carry sentiment: a linear head must beat chance clearly.
    assert record.metrics.test.accuracy > 0.6
    assert record.efficiency.cache_build_seconds > 0
    assert record.efficiency.train_flops < 0.01 * record.efficiency.train_flops_naive
    losses = [point.train_loss for point in record.history[1:]]  # step 0 has none yet
    assert losses[-1] < losses[0]
