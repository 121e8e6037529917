"""Report: records -> numbers (analysis) -> answers -> tables, figures, Markdown and HTML."""
