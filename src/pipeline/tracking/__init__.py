"""Everything MLflow: the only package of the pipeline that imports mlflow."""
