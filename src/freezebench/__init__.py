"""freezebench: what freezing transformer layers costs and saves when fine-tuning classifiers.

The public API (imported on first use, so ``import freezebench`` stays light)::

    import freezebench as fb

    record = fb.run(fb.RunConfig(model="bert-base-cased", strategy="bottom",
                                 strategy_params={"k": 4}, output_dir="results/mine"))
    summary = fb.run_sweep(fb.load_study("configs/quick.yaml"))
    frame = fb.load_records("results/quick")        # one row per run
    fb.write_report("results/quick")                # report.md, report.html
"""

from importlib import import_module, metadata

__version__ = metadata.version("freezebench")

_API = {
    "run": "freezebench.pipeline",
    "RunConfig": "freezebench.config",
    "RunRecord": "freezebench.record",
    "Status": "freezebench.record",
    "load_study": "freezebench.study.config",
    "run_sweep": "freezebench.study.sweep",
    "load_records": "freezebench.report.export",
    "write_report": "freezebench.report.document",
    "register": "freezebench.strategies",
    "STRATEGIES": "freezebench.strategies",
    "FreezePlan": "freezebench.strategies",
    "load_finetuned": "freezebench.saving",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'freezebench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
