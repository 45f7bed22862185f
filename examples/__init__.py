"""Worked examples of bringing your own code: a backbone and a DataModule, with their configs in conf/."""
