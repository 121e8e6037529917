"""Engine: freezing, precision, batching, the frozen-prefix cache, training and evaluation."""
