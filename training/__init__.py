"""The one training path behind every app: data layouts, sampling, the loop, evaluation."""
