"""Data sets as in-memory tensors and the DataModule that serves them (no MLflow here)."""
