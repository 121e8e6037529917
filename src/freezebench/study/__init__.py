"""Study: a YAML study expanded into runs, the sweep that runs them, and its executors."""
