"""The predict Lambda: POST /v1/models/{model}/predict and friends, behind API Gateway (REST)."""
