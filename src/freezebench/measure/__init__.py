"""Measure: task metrics, training FLOPs, time, memory, and the record's efficiency block."""
