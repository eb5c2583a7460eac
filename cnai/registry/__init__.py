"""The SageMaker Model Registry: versions, metrics, lineage, approval; and `cnai models`."""
