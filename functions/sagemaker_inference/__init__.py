"""Entry point of the SageMaker Serverless container (copied to code/inference.py by cnai.sagemaker.package_model)."""
