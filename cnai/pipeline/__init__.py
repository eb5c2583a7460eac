"""Workflow task logic of the training state machine (PrepareDataset, QualityGate, Notify) and `cnai train`."""
