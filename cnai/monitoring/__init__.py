"""Drift monitoring: served traffic vs the serving model's dataset profile; retraining on drift; `cnai monitor`."""
