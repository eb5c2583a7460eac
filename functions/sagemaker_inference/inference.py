"""SageMaker inference toolkit entry point: the hooks live in cnai.sagemaker, on the shared Predictor."""

from cnai.sagemaker import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
