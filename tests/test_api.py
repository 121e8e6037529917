"""The public Python API: what `import freezebench` offers, used as a user would."""

from __future__ import annotations

import subprocess
import sys

import freezebench as fb


def test_the_api_names_resolve_and_import_freezebench_stays_light():
    for name in fb.__all__:
        assert getattr(fb, name) is not None
    probe = ("import sys, freezebench; print(sorted(m for m in ('torch', 'transformers') "
             "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_a_study_through_the_api(tiny_model_dirs, sentiment_folder, tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(
        f"name: api\nmodel: {tiny_model_dirs['bert']}\ndataset: {sentiment_folder}\n"
        "recipe: {per_device_train_batch_size: 8}\nseeds: [1]\nlearning_rates: [1.0e-3]\n"
        f"strategies: [full, head]\noutput_dir: {tmp_path / 'out'}\n")
    summary = fb.run_sweep(fb.load_study(study), progress=False)
    assert (summary.completed, summary.failed) == (2, 0)
    frame = fb.load_records(tmp_path / "out")
    assert sorted(frame["strategy_label"]) == ["full", "head"]
    assert frame["test_f1"].between(0, 1).all() and (frame["train_seconds"] > 0).all()
    paths = fb.write_report(tmp_path / "out")
    assert paths.markdown.is_file() and paths.html.is_file()
    record = fb.run(fb.RunConfig(model=tiny_model_dirs["bert"], dataset=str(sentiment_folder),
                                 strategy="bitfit", output_dir=str(tmp_path / "one"),
                                 disable_tqdm=True))
    assert record.status is fb.Status.COMPLETED and record.metrics.test.samples > 0
    assert "bitfit" in fb.STRATEGIES
