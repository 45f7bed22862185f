"""Compressed variants of a trained model (pruned, int8, half precision, ONNX), built and measured.

No MLflow here: `pipeline.tracking.compression` logs what these modules produce.
"""
