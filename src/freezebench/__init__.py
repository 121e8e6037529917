"""freezebench: what freezing transformer layers costs and saves when fine-tuning classifiers."""

__version__ = "0.1.0"
