"""Compressed variants of a trained model (pruned, int8, half precision, ONNX), built and measured.

No MLflow here: `pipeline.tracking.compressed_models` logs what these modules produce.
"""
